package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"unicode/utf8"
)

// Options configure Parse.
type Options struct {
	// File is the name shown in errors.
	File string
	// Catalog resolves `uses`; nil accepts no action at all.
	Catalog ActionCatalog
}

// ParseFile reads and parses a definition file.
func ParseFile(path string, catalog ActionCatalog) (*Pipeline, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("cannot read the definition: %v", unwrapPathErr(err))}}
	}
	if info.IsDir() {
		return nil, ErrorList{{File: path, Msg: "is a directory, not a definition file"}}
	}
	if info.Size() > MaxFileSize {
		return nil, ErrorList{{File: path, Msg: sizeMsg(info.Size())}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("cannot read the definition: %v", unwrapPathErr(err))}}
	}
	return Parse(data, Options{File: path, Catalog: catalog})
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func sizeMsg(n int64) string {
	return fmt.Sprintf("the definition is %.1f MiB; definitions are limited to %d MiB", float64(n)/(1<<20), MaxFileSize>>20)
}

// Parse parses and validates a definition written in YAML or JSON. On failure the
// error is an ErrorList holding every problem found, each with its position.
func Parse(data []byte, opts Options) (*Pipeline, error) {
	p, errs := parse(data, opts)
	if len(errs) > 0 {
		for _, e := range errs {
			e.File = opts.File
		}
		return nil, errs
	}
	return p, nil
}

func parse(data []byte, opts Options) (*Pipeline, ErrorList) {
	if len(data) > MaxFileSize {
		return nil, ErrorList{{Msg: sizeMsg(int64(len(data)))}}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrorList{{Pos: Pos{1, 1}, Msg: "the definition is empty; a pipeline needs at least namespace and jobs or stages"}}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, ErrorList{{Pos: offsetPos(data, i), Msg: "binary data (a NUL byte): a definition is YAML or JSON text"}}
	}
	if !utf8.Valid(data) {
		i := firstInvalidUTF8(data)
		return nil, ErrorList{{Pos: offsetPos(data, i), Msg: "invalid UTF-8: a definition is YAML or JSON text in UTF-8"}}
	}
	root, err := parseDocument(data)
	if err != nil {
		return nil, ErrorList{err.(*Error)}
	}
	if root.kind != kindMap {
		return nil, ErrorList{{Pos: root.pos, Msg: fmt.Sprintf("a definition is a mapping with namespace, version and jobs or stages; got %s", root.kind)}}
	}
	d := &decoder{pos: positions{}, strs: map[string]*node{}}
	p := &Pipeline{}
	d.decode(root, reflect.ValueOf(p).Elem(), "")
	p.positions = d.pos
	v := &validator{p: p, d: d, lines: bytes.Split(data, []byte("\n")), catalog: opts.Catalog}
	v.validate()
	errs := append(d.errs, v.errs...)
	errs.sort()
	return p, errs
}

func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// offsetPos converts a byte offset into a 1-based line and column.
func offsetPos(data []byte, off int) Pos {
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return Pos{Line: line, Column: col}
}

// DecodeJob decodes one job from its JSON (or YAML) form, as produced by
// json.Marshal of a Job. It checks types and fields but not the rules that need
// the whole pipeline; it is how an agent receives the job it runs.
func DecodeJob(data []byte) (*Job, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, ErrorList{err.(*Error)}
	}
	d := &decoder{pos: positions{}, strs: map[string]*node{}}
	j := &Job{}
	d.decode(root, reflect.ValueOf(j).Elem(), "")
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	for i := range j.Steps {
		if j.Steps[i].Name == "" {
			j.Steps[i].Name = fmt.Sprintf("step-%d", i+1)
		}
	}
	return j, nil
}

// Canonical is a parsed definition's canonical JSON and its content hash
// (hex SHA-256): the definition marshalled again (the types marshal
// deterministically), so two definitions that differ only in layout, key
// order or YAML versus JSON hash the same. Stored versions are kept in this
// form and the hash is their commit id.
func Canonical(p *Pipeline) (json.RawMessage, string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}
