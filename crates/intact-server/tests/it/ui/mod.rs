//! The web UI: its pages over plain HTTP (escaping, headers, access, paging), and the same
//! pages in a real headless chromium driven through WebDriver (`browser`).

mod browser;
mod pages;
mod webdriver;
