// Package web serves Runnel's web UI: hand-written ES modules and CSS embedded
// in the binary, no build step. Every page is index.html; the client-side
// router (static/app.js) draws the page for the path, and everything it shows
// comes from the HTTP API and the WebSocket gateway with the API token the user
// signed in with, which the browser keeps in sessionStorage.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static
var staticFS embed.FS

// CSP allows only the UI's own scripts and styles (no inline script, no eval),
// API calls and the WebSocket to the same origin, and no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// SetSecurityHeaders sets the headers every UI response carries.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

// asset is one embedded file, with its gzipped form and a content hash for
// ETag revalidation. The gzipped form is made on the file's first request:
// compressing the whole UI at its best level took 15 ms of every server
// start, and most servers never serve most files.
type asset struct {
	body        []byte
	contentType string
	etag        string

	gzOnce sync.Once
	gz     []byte // nil when compressing does not make it smaller
}

// gzipped returns the gzipped body, or nil when it is not smaller.
func (a *asset) gzipped() []byte {
	a.gzOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(a.body)
		zw.Close()
		if buf.Len() < len(a.body) {
			a.gz = buf.Bytes()
		}
	})
	return a.gz
}

// Handler serves the UI. It answers GET and HEAD: /assets/… are the embedded
// files (404 when missing); any other path is index.html, so that a reload or a
// shared link (/runs/run_…?step=…&line=…) opens that page.
type Handler struct {
	assets  map[string]*asset
	index   *asset
	modTime time.Time
}

// New loads the embedded files.
func New() *Handler {
	h := &Handler{assets: map[string]*asset{}, modTime: time.Now()}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		a := &asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		h.assets[strings.TrimPrefix(p, "static/")] = a
		return nil
	})
	if err != nil {
		panic("web: reading the embedded UI: " + err.Error())
	}
	h.index = h.assets["index.html"]
	if h.index == nil {
		panic("web: static/index.html is missing")
	}
	return h
}

// Size reports the total size of the UI's JavaScript and CSS, raw and gzipped.
func (h *Handler) Size() (raw, gzipped int) {
	for name, a := range h.assets {
		if strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".css") {
			raw += len(a.body)
			if gz := a.gzipped(); gz != nil {
				gzipped += len(gz)
			} else {
				gzipped += len(a.body)
			}
		}
	}
	return raw, gzipped
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	SetSecurityHeaders(hdr)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method "+r.Method+" is not allowed on "+r.URL.Path+"; allowed: GET, HEAD", http.StatusMethodNotAllowed)
		return
	}
	a := h.index
	if name, ok := strings.CutPrefix(r.URL.Path, "/assets/"); ok {
		a = h.assets[name]
		if a == nil || name == "index.html" {
			http.Error(w, "no such file: "+r.URL.Path, http.StatusNotFound)
			return
		}
		// Module URLs carry no content hash (there is no build step), so the
		// browser revalidates each time: a 304 on an unchanged ETag.
		hdr.Set("Cache-Control", "no-cache")
	} else {
		hdr.Set("Cache-Control", "no-store")
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	hdr.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if acceptsGzip(r) {
		if gz := a.gzipped(); gz != nil {
			hdr.Set("Content-Encoding", "gzip")
			body = gz
		}
	}
	http.ServeContent(w, r, "", h.modTime, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}
