// intact's web UI: the live parts, nothing else. Every page works without this script; it
// adds events as they are committed, refreshes the "now" section, and copies go.sum lines.
// Text from the server is put into the page with textContent only, never as markup.
"use strict";

function versionHref(e) {
  const seg = (s) => encodeURIComponent(s);
  const path = (s) => s.split("/").map(seg).join("/");
  return "/ui/repos/" + seg(e.repo) + "/" + path(e.name) + "/@v/" + seg(e.version);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function formatTime(iso) {
  return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

// Follows the event log (a long poll; the server answers at once when events are there) and
// puts each new event at the top of the table.
async function followEvents(tbody) {
  let after = Number(tbody.dataset.after || "0");
  const status = document.getElementById("events-status");
  for (;;) {
    try {
      const resp = await fetch("/api/v1/events?after=" + after + "&wait_seconds=25&limit=100",
                               { credentials: "same-origin", cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const page = await resp.json();
      for (const e of page.events) {
        const row = document.createElement("tr");
        row.className = "new";
        cell(row, String(e.seq));
        const at = cell(row, "");
        const time = document.createElement("time");
        time.dateTime = e.at;
        time.textContent = formatTime(e.at);
        at.appendChild(time);
        cell(row, e.kind);
        const link = document.createElement("a");
        link.href = versionHref(e);
        link.textContent = e.repo + "/" + e.name + "@" + e.version;
        cell(row, "").appendChild(link);
        tbody.insertBefore(row, tbody.firstChild);
      }
      after = page.next;
      tbody.dataset.after = String(after);
      if (status && page.events.length > 0) {
        status.textContent = page.events.length + " new event(s); newest first.";
      }
    } catch (err) {
      if (status) status.textContent = "Live updates paused (" + err.message + "); retrying.";
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
}

// Reloads the page's "now" section (open transactions, staging jobs) every few seconds.
function refreshNow(section) {
  const seconds = Number(section.dataset.refresh || "5");
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const resp = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById("now");
      const current = document.getElementById("now");
      if (fresh && current) current.replaceWith(document.importNode(fresh, true));
    } catch (_) {
      // The next round tries again.
    }
  }, seconds * 1000);
}

// On a name's first page of versions: a version committed while the page is open appears at
// the top.
async function followVersions(tbody) {
  const repo = tbody.dataset.repo;
  const name = tbody.dataset.name;
  // Where the event log ended when the page was made (read before its versions were listed).
  let after = Number(tbody.dataset.after || "0");
  for (;;) {
    try {
      const resp = await fetch("/api/v1/events?after=" + after + "&wait_seconds=25&limit=100",
                               { credentials: "same-origin", cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const page = await resp.json();
      for (const e of page.events) {
        if (e.kind !== "committed" || e.repo !== repo || e.name !== name) continue;
        const shown = Array.from(tbody.querySelectorAll("tr > td:first-child a"));
        if (shown.some((a) => a.textContent === e.version)) continue;
        const row = document.createElement("tr");
        row.className = "new";
        const link = document.createElement("a");
        link.href = versionHref(e);
        link.textContent = e.version;
        cell(row, "").appendChild(link);
        const at = cell(row, "");
        const time = document.createElement("time");
        time.dateTime = e.at;
        time.textContent = formatTime(e.at);
        at.appendChild(time);
        cell(row, String(e.data && e.data.files !== undefined ? e.data.files : ""));
        cell(row, e.data && e.data.size !== undefined ? e.data.size + " B" : "");
        tbody.insertBefore(row, tbody.firstChild);
      }
      after = page.next;
    } catch (_) {
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
}

function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (_) {
        // No clipboard (an insecure origin): select the text so the keyboard can copy it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const events = document.getElementById("events");
  if (events) followEvents(events);
  const now = document.getElementById("now");
  if (now) refreshNow(now);
  const versions = document.getElementById("versions");
  if (versions && versions.dataset.live === "true") followVersions(versions);
  copyButtons();
});
