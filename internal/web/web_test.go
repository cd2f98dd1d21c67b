package web

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPagesAreIndex(t *testing.T) {
	h := New()
	for _, path := range []string{"/", "/pipelines", "/runs/run_x", "/runs/run_x?step=sr_y&line=10", "/no/such/page"} {
		rec := get(t, h, "GET", path, nil)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `<script type="module" src="/assets/app.js">`) {
			t.Errorf("GET %s: %d %.80q", path, rec.Code, rec.Body.String())
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s: Cache-Control %q", path, got)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := New()
	for _, path := range []string{"/", "/assets/app.js", "/assets/missing.js"} {
		rec := get(t, h, "GET", path, nil)
		hdr := rec.Header()
		csp := hdr.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP lacks %q: %s", path, want, csp)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP allows unsafe sources: %s", path, csp)
		}
		for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
			if got := hdr.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", path, k, got, want)
			}
		}
	}
}

func TestAssets(t *testing.T) {
	h := New()
	tests := []struct {
		path, ctype string
		code        int
	}{
		{"/assets/app.js", "text/javascript; charset=utf-8", 200},
		{"/assets/lib/logview.js", "text/javascript; charset=utf-8", 200},
		{"/assets/style.css", "text/css; charset=utf-8", 200},
		{"/assets/favicon.svg", "image/svg+xml", 200},
		{"/assets/nope.js", "text/plain; charset=utf-8", 404},
		{"/assets/index.html", "text/plain; charset=utf-8", 404},
		{"/assets/", "text/plain; charset=utf-8", 404},
	}
	for _, tt := range tests {
		rec := get(t, h, "GET", tt.path, nil)
		if rec.Code != tt.code || rec.Header().Get("Content-Type") != tt.ctype {
			t.Errorf("GET %s: %d %q, want %d %q", tt.path, rec.Code, rec.Header().Get("Content-Type"), tt.code, tt.ctype)
		}
	}
	// Revalidation: the ETag answers 304; gzip when accepted.
	first := get(t, h, "GET", "/assets/app.js", nil)
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("app.js: ETag %q, Cache-Control %q", etag, first.Header().Get("Cache-Control"))
	}
	if rec := get(t, h, "GET", "/assets/app.js", map[string]string{"If-None-Match": etag}); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	gz := get(t, h, "GET", "/assets/app.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", gz.Header())
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != first.Body.String() {
		t.Error("gzipped app.js differs from app.js")
	}
	if rec := get(t, h, "GET", "/assets/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); rec.Header().Get("Content-Encoding") != "" {
		t.Error("gzip sent although refused with q=0")
	}
}

func TestMethods(t *testing.T) {
	h := New()
	if rec := get(t, h, "HEAD", "/pipelines", nil); rec.Code != 200 {
		t.Errorf("HEAD: %d", rec.Code)
	}
	rec := get(t, h, "POST", "/pipelines", nil)
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" || !strings.Contains(rec.Body.String(), "POST is not allowed on /pipelines") {
		t.Errorf("POST: %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
}

// TestSizeBudget keeps the UI small: all of its JavaScript and CSS, gzipped,
// under 150 KB.
func TestSizeBudget(t *testing.T) {
	raw, gz := New().Size()
	t.Logf("UI JavaScript and CSS: %d bytes, %d gzipped", raw, gz)
	if gz > 150*1000 {
		t.Errorf("UI JavaScript and CSS are %d bytes gzipped, over the 150 KB budget", gz)
	}
	if raw < 20000 {
		t.Errorf("only %d bytes of UI: files missing from the embed?", raw)
	}
}

// TestNoInlineScriptOrStyle: the CSP forbids inline script and style
// attributes, so index.html must have none.
func TestNoInlineScriptOrStyle(t *testing.T) {
	b, err := staticFS.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, bad := range []string{"<script>", "style=", "onload=", "onclick=", "javascript:"} {
		if strings.Contains(s, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
}
