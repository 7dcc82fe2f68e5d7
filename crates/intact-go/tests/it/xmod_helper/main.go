// A helper for intact-go's tests, built from the golang.org/x/mod sources vendored in
// GOROOT: it answers batches of questions (JSON on stdin, JSON on stdout) so the tests can
// compare this crate's answers with x/mod's.
package main

import (
	"encoding/json"
	"os"
	"path"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

func errString(err error) string {
	if err == nil {
		return ""
	}
	return "error: " + err.Error()
}

func main() {
	var in json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	var out interface{}
	switch os.Args[1] {
	case "paths":
		var paths []string
		if err := json.Unmarshal(in, &paths); err != nil {
			panic(err)
		}
		var rs [][]string
		for _, p := range paths {
			e, eErr := module.EscapePath(p)
			u, uErr := module.UnescapePath(p)
			ev, evErr := module.EscapeVersion(p)
			uv, uvErr := module.UnescapeVersion(p)
			rs = append(rs, []string{
				errString(module.CheckPath(p)),
				errString(module.CheckImportPath(p)),
				errString(module.CheckFilePath(p)),
				e + errString(eErr),
				u + errString(uErr),
				ev + errString(evErr),
				uv + errString(uvErr),
			})
		}
		out = rs
	case "versions":
		var vs []string
		if err := json.Unmarshal(in, &vs); err != nil {
			panic(err)
		}
		type res struct {
			Valid                                                         bool
			Canonical, Major, MajorMinor, Prerelease, Build, ModCanonical string
			Pseudo                                                        bool
			PseudoTime                                                    string
			Compare                                                       []int
		}
		var rs []res
		for _, v := range vs {
			r := res{
				Valid:        semver.IsValid(v),
				Canonical:    semver.Canonical(v),
				Major:        semver.Major(v),
				MajorMinor:   semver.MajorMinor(v),
				Prerelease:   semver.Prerelease(v),
				Build:        semver.Build(v),
				ModCanonical: module.CanonicalVersion(v),
				Pseudo:       module.IsPseudoVersion(v),
			}
			if t, err := module.PseudoVersionTime(v); err == nil {
				r.PseudoTime = t.UTC().Format(time.RFC3339)
			}
			for _, w := range vs {
				r.Compare = append(r.Compare, semver.Compare(v, w))
			}
			rs = append(rs, r)
		}
		sorted := append([]string(nil), vs...)
		semver.Sort(sorted)
		out = map[string]interface{}{"Results": rs, "Sorted": sorted}
	case "check":
		var pairs [][2]string
		if err := json.Unmarshal(in, &pairs); err != nil {
			panic(err)
		}
		var rs []string
		for _, p := range pairs {
			rs = append(rs, errString(module.Check(p[0], p[1])))
		}
		out = rs
	case "match":
		var pairs [][2]string
		if err := json.Unmarshal(in, &pairs); err != nil {
			panic(err)
		}
		var rs [][3]bool
		for _, p := range pairs {
			m, err := path.Match(p[0], p[1])
			rs = append(rs, [3]bool{module.MatchPrefixPatterns(p[0], p[1]), m, err != nil})
		}
		out = rs
	case "create":
		var reqs [][4]string
		if err := json.Unmarshal(in, &reqs); err != nil {
			panic(err)
		}
		var rs []string
		for _, r := range reqs {
			f, err := os.Create(r[3])
			if err != nil {
				panic(err)
			}
			err = modzip.CreateFromDir(f, module.Version{Path: r[1], Version: r[2]}, r[0])
			f.Close()
			if err != nil {
				rs = append(rs, errString(err))
				continue
			}
			h, err := dirhash.HashZip(r[3], dirhash.Hash1)
			rs = append(rs, h+errString(err))
		}
		out = rs
	case "checkzip":
		var reqs [][3]string
		if err := json.Unmarshal(in, &reqs); err != nil {
			panic(err)
		}
		var rs [][2]string
		for _, r := range reqs {
			_, err := modzip.CheckZip(module.Version{Path: r[1], Version: r[2]}, r[0])
			h, herr := dirhash.HashZip(r[0], dirhash.Hash1)
			rs = append(rs, [2]string{errString(err), h + errString(herr)})
		}
		out = rs
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
