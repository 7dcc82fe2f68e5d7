// Writes log.json: a checksum-database log built with golang.org/x/mod/sumdb's own tlog and
// note packages (Debian's golang-golang-x-mod-dev), for intact-go's sumdb tests to check
// their reading of it against. Regenerate with:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run gen.go > log.json
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A deterministic byte stream, so the key (and every signature) is the same on each run.
type seeded struct{ next [32]byte }

func (s *seeded) Read(p []byte) (int, error) {
	for i := range p {
		if i%32 == 0 {
			s.next = sha256.Sum256(s.next[:])
		}
		p[i] = s.next[i%32]
	}
	return len(p), nil
}

type hashes map[int64]tlog.Hash

func (h hashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		v, ok := h[x]
		if !ok {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = v
	}
	return out, nil
}

func record(fork bool, i int64) []byte {
	if fork && i >= 500 {
		return []byte(fmt.Sprintf("example.com/forked%d v1.0.%d h1:%s\n", i, i, base64.StdEncoding.EncodeToString(make([]byte, 32))))
	}
	return []byte(fmt.Sprintf("example.com/m%d v1.0.%d h1:%s\nexample.com/m%d v1.0.%d/go.mod h1:%s\n", i, i, base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(i))), i, i, base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(-i)))))
}

type out struct {
	Verifier string            `json:"verifier"`
	Records  []string          `json:"records"`
	Trees    map[string]string `json:"trees"`
	Forked   map[string]string `json:"forked_trees"`
	Tiles    map[string]string `json:"tiles"`
	Lookup   string            `json:"lookup_42"`
}

func build(fork bool, size int64, signer note.Signer, o *out) {
	h := hashes{}
	trees := o.Trees
	if fork {
		trees = o.Forked
	}
	for i := int64(0); i < size; i++ {
		data := record(fork, i)
		if !fork {
			o.Records = append(o.Records, string(data))
		}
		stored, err := tlog.StoredHashes(i, data, h)
		if err != nil {
			panic(err)
		}
		base := tlog.StoredHashCount(i)
		for j, s := range stored {
			h[base+int64(j)] = s
		}
		n := i + 1
		if n == 1 || n == 2 || n == 3 || n == 7 || n == 8 || n == 255 || n == 256 || n == 257 || n == 600 || n == 1000 || n == 1001 {
			th, err := tlog.TreeHash(n, h)
			if err != nil {
				panic(err)
			}
			signed, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tlog.Tree{N: n, Hash: th}))}, signer)
			if err != nil {
				panic(err)
			}
			trees[fmt.Sprint(n)] = string(signed)
			if !fork {
				for _, t := range tlog.NewTiles(2, 0, n) {
					data, err := tlog.ReadTileData(t, h)
					if err != nil {
						panic(err)
					}
					o.Tiles[t.Path()] = base64.StdEncoding.EncodeToString(data)
				}
				if n == 1000 {
					msg, err := tlog.FormatRecord(42, record(false, 42))
					if err != nil {
						panic(err)
					}
					o.Lookup = string(msg) + string(signed)
				}
			}
		}
	}
}

func main() {
	skey, vkey, err := note.GenerateKey(&seeded{}, "sum.test.example")
	if err != nil {
		panic(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		panic(err)
	}
	o := out{Verifier: vkey, Trees: map[string]string{}, Forked: map[string]string{}, Tiles: map[string]string{}}
	build(false, 1001, signer, &o)
	build(true, 1000, signer, &o)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(o); err != nil {
		panic(err)
	}
}
