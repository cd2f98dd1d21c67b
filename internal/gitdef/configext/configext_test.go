package configext

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-fed/httpsig"

	"github.com/runnel-ci/runnel"
)

const testSecret = "s3cr3t-Shared-Key-4f9a"

// --- An independent verifier, written from draft-cavage-http-signatures ---

// parseSignatureParams parses `name="value",name="value"` (the draft's
// Signature header grammar: comma-separated auth-params with quoted values).
func parseSignatureParams(h string) (map[string]string, error) {
	params := map[string]string{}
	rest := strings.TrimSpace(h)
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("malformed parameter in %q", rest)
		}
		name := strings.TrimSpace(rest[:eq])
		rest = rest[eq+1:]
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("parameter %s is not quoted", name)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("parameter %s is not terminated", name)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("duplicate parameter %s", name)
		}
		params[name] = rest[1 : 1+end]
		rest = strings.TrimSpace(rest[1+end+1:])
		if rest != "" {
			if rest[0] != ',' {
				return nil, fmt.Errorf("expected a comma after %s", name)
			}
			rest = strings.TrimSpace(rest[1:])
		}
	}
	return params, nil
}

// verifyDroneRequest checks a request the way a Drone extension's handler
// would: signature, digest and date. body is the received body.
func verifyDroneRequest(r *http.Request, body []byte, secret string, now time.Time) error {
	params, err := parseSignatureParams(r.Header.Get("Signature"))
	if err != nil {
		return err
	}
	if params["keyId"] != "hmac-key" {
		return fmt.Errorf("keyId = %q", params["keyId"])
	}
	if params["algorithm"] != "hmac-sha256" {
		return fmt.Errorf("algorithm = %q", params["algorithm"])
	}
	if params["headers"] != "accept accept-encoding content-type date digest" {
		return fmt.Errorf("headers = %q", params["headers"])
	}
	got, err := base64.StdEncoding.DecodeString(params["signature"])
	if err != nil {
		return fmt.Errorf("signature is not base64: %v", err)
	}
	var lines []string
	for _, name := range strings.Fields(params["headers"]) {
		vals := r.Header.Values(name)
		if len(vals) == 0 {
			return fmt.Errorf("signed header %s is missing", name)
		}
		lines = append(lines, name+": "+strings.Join(vals, ", "))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strings.Join(lines, "\n")))
	if subtle.ConstantTimeCompare(mac.Sum(nil), got) != 1 {
		return errors.New("signature mismatch")
	}
	sum := sha256.Sum256(body)
	if want := "SHA-256=" + base64.StdEncoding.EncodeToString(sum[:]); r.Header.Get("Digest") != want {
		return fmt.Errorf("digest = %q, want %q", r.Header.Get("Digest"), want)
	}
	date, err := http.ParseTime(r.Header.Get("Date"))
	if err != nil {
		return fmt.Errorf("date: %v", err)
	}
	if d := now.Sub(date); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("date %s is %s away from now", date, d)
	}
	return nil
}

// extension is an httptest config extension: it verifies every request and
// then lets reply answer.
type extension struct {
	*httptest.Server
	calls    atomic.Int32
	verified atomic.Int32
	last     atomic.Pointer[Request]
	headers  atomic.Pointer[http.Header]
}

func newExtension(t *testing.T, reply http.HandlerFunc) *extension {
	t.Helper()
	ext := &extension{}
	ext.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ext.calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := r.Header.Clone()
		ext.headers.Store(&h)
		if r.Method != http.MethodPost {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if err := verifyDroneRequest(r, body, testSecret, time.Now()); err != nil {
			t.Logf("verifier: %v", err)
			http.Error(w, "Invalid Signature", http.StatusBadRequest)
			return
		}
		var req Request
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "Invalid Input", http.StatusBadRequest)
			return
		}
		ext.last.Store(&req)
		ext.verified.Add(1)
		reply(w, r)
	}))
	t.Cleanup(ext.Close)
	return ext
}

func sampleRequest() Request {
	return NewRequest(Source{
		PipelineID: "pl_1", PipelineName: "web", ProjectID: "acme",
		RepoURL: "https://git.example.com/acme/web.git", DefaultBranch: "main", ConfigPath: ".runnel/web.yaml",
		RunNumber: 7,
		Trigger: runnel.Trigger{Type: "event", Event: "push", Ref: "refs/heads/main", Branch: "main",
			Commit: "abc123", Actor: "alice"},
		Created: time.Unix(1700000000, 0),
	})
}

func TestFind(t *testing.T) {
	const yamlText = "kind: pipeline\nsteps:\n  - run: make\n"
	bigData := strings.Repeat("x", MaxResponseSize+1)
	tests := []struct {
		name      string
		reply     http.HandlerFunc
		timeout   time.Duration
		wantData  string
		wantFound bool
		wantErr   []string // substrings of the error; nil means no error
	}{
		{
			name: "200 with data",
			reply: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]string{"data": yamlText, "kind": "pipeline"})
			},
			wantData: yamlText, wantFound: true,
		},
		{
			name:  "204 no content",
			reply: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
		},
		{
			name:  "200 with empty data",
			reply: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"data":""}`) },
		},
		{
			name:  "200 null",
			reply: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "null\n") },
		},
		{
			name: "404 with reason",
			reply: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no config for repo", http.StatusNotFound)
			},
			wantErr: []string{"404", "no config for repo"},
		},
		{
			name:    "500 empty body",
			reply:   func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) },
			wantErr: []string{"500", "Internal Server Error"},
		},
		{
			name: "long error body is bounded",
			reply: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "reason "+strings.Repeat("y", 4000), http.StatusUnprocessableEntity)
			},
			wantErr: []string{"422", "reason yyy"},
		},
		{
			name: "error body echoing the secret is redacted",
			reply: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "bad key "+testSecret, http.StatusForbidden)
			},
			wantErr: []string{"403", "bad key [REDACTED]"},
		},
		{
			name: "302 redirect is not followed",
			reply: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			wantErr: []string{"302", "redirect", "/elsewhere"},
		},
		{
			name: "invalid JSON",
			reply: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "<html>oops</html>")
			},
			wantErr: []string{"invalid JSON", "invalid character"},
		},
		{
			name: "data of the wrong type",
			reply: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data": 42}`)
			},
			wantErr: []string{"invalid JSON", "number"},
		},
		{
			name: "oversized body",
			reply: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"data":"`+bigData+`"}`)
			},
			wantErr: []string{"larger than 5242880 bytes"},
		},
		{
			name: "timeout",
			reply: func(w http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			},
			timeout: 200 * time.Millisecond,
			wantErr: []string{"did not answer within 200ms"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ext := newExtension(t, tc.reply)
			c := &Client{Endpoint: ext.URL + "/config", Secret: testSecret, Timeout: tc.timeout}
			req := sampleRequest()
			start := time.Now()
			data, found, err := c.Find(context.Background(), req)
			if tc.timeout > 0 {
				if el := time.Since(start); el > 5*time.Second {
					t.Errorf("Find took %s with a %s timeout", el, tc.timeout)
				}
			}
			if ext.verified.Load() != 1 || ext.calls.Load() != 1 {
				t.Fatalf("extension saw %d calls, %d verified; want exactly 1 verified call", ext.calls.Load(), ext.verified.Load())
			}
			if got := ext.last.Load(); got.Repo.Slug != req.Repo.Slug || got.Build.After != req.Build.After {
				t.Errorf("extension received %+v", got)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Find: %v", err)
				}
				if data != tc.wantData || found != tc.wantFound {
					t.Fatalf("Find = %q, %v; want %q, %v", data, found, tc.wantData, tc.wantFound)
				}
				return
			}
			if err == nil {
				t.Fatalf("Find = %q, %v, nil; want an error", data, found)
			}
			if data != "" || found {
				t.Errorf("Find returned %q, %v with an error", data, found)
			}
			msg := err.Error()
			for _, want := range tc.wantErr {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if !strings.Contains(msg, ext.URL) {
				t.Errorf("error %q does not name the endpoint", msg)
			}
			if strings.Contains(msg, testSecret) {
				t.Errorf("error %q contains the secret", msg)
			}
			if len(msg) > 1200 {
				t.Errorf("error is %d bytes long, the body is not bounded", len(msg))
			}
		})
	}
}

func TestFindWrongSecret(t *testing.T) {
	ext := newExtension(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":"x: 1"}`)
	})
	c := &Client{Endpoint: ext.URL, Secret: "not-the-secret"}
	_, found, err := c.Find(context.Background(), sampleRequest())
	if err == nil || found {
		t.Fatalf("Find with a wrong secret = %v, %v; want an error", found, err)
	}
	if !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "Invalid Signature") {
		t.Errorf("error = %q; want the 400 Invalid Signature answer", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("error %q contains the secret", err)
	}
	if ext.verified.Load() != 0 {
		t.Errorf("the verifier accepted a request signed with a wrong secret")
	}
}

func TestFindStaleDateRejected(t *testing.T) {
	ext := newExtension(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":"x: 1"}`)
	})
	c := &Client{Endpoint: ext.URL, Secret: testSecret, Now: func() time.Time { return time.Now().Add(-10 * time.Minute) }}
	if _, _, err := c.Find(context.Background(), sampleRequest()); err == nil || !strings.Contains(err.Error(), "Invalid Signature") {
		t.Fatalf("Find with a stale Date: err = %v; want Invalid Signature", err)
	}
}

func TestFindHeadersAndBody(t *testing.T) {
	fixed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	ext := newExtension(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	// The extension verifies Date against the real clock; answer with a
	// separate recorder for the fixed-clock check below.
	var gotDate, gotSig string
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotDate, gotSig = r.Header.Get("Date"), r.Header.Get("Signature")
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rec.Close()
	if _, _, err := (&Client{Endpoint: rec.URL, Secret: testSecret, Now: func() time.Time { return fixed }}).Find(context.Background(), sampleRequest()); err != nil {
		t.Fatal(err)
	}
	if want := "Wed, 02 Jan 2030 02:04:05 GMT"; gotDate != want {
		t.Errorf("Date = %q, want %q", gotDate, want)
	}
	if !strings.HasPrefix(gotSig, `keyId="hmac-key",algorithm="hmac-sha256",signature="`) ||
		!strings.HasSuffix(gotSig, `",headers="accept accept-encoding content-type date digest"`) {
		t.Errorf("Signature = %q", gotSig)
	}

	req := sampleRequest()
	_, found, err := (&Client{Endpoint: ext.URL, Secret: testSecret}).Find(context.Background(), req)
	if err != nil || found {
		t.Fatalf("Find = %v, %v", found, err)
	}
	h := *ext.headers.Load()
	for name, want := range map[string]string{
		"Accept":          "application/json",
		"Accept-Encoding": "identity",
		"Content-Type":    "application/json",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := ext.last.Load(); got.Repo.Config != ".runnel/web.yaml" || got.Build.Number != 7 {
		t.Errorf("extension received %+v", got)
	}
}

func TestFindWithCustomHTTPClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/other", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
		io.WriteString(w, `{"data":"x: 1"}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for name, hc := range map[string]*http.Client{"default": nil, "custom": {}} {
		c := &Client{Endpoint: srv.URL + "/config", Secret: testSecret, HTTP: hc}
		_, found, err := c.Find(context.Background(), sampleRequest())
		if err == nil || found || !strings.Contains(err.Error(), "307") {
			t.Errorf("%s client: Find = %v, %v; want a 307 error", name, found, err)
		}
	}
	if followed.Load() != 0 {
		t.Errorf("the redirect was followed %d times", followed.Load())
	}
}

func TestFindCallerCancel(t *testing.T) {
	ext := newExtension(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ext.verified.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, _, err := (&Client{Endpoint: ext.URL, Secret: testSecret}).Find(ctx, sampleRequest())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want context.Canceled", err)
	}
	if strings.Contains(err.Error(), "did not answer") {
		t.Errorf("a cancellation is reported as a timeout: %v", err)
	}
}

func TestFindNoEndpoint(t *testing.T) {
	if _, _, err := (&Client{Secret: testSecret}).Find(context.Background(), sampleRequest()); err == nil {
		t.Fatal("Find without an endpoint succeeded")
	}
}

// TestSignatureCrossCheck verifies our requests with an independent
// implementation of the draft (go-fed/httpsig).
func TestSignatureCrossCheck(t *testing.T) {
	type result struct{ good, bad, tampered error }
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var res result
		v, err := httpsig.NewVerifier(r)
		if err != nil {
			res.good = err
		} else {
			if v.KeyId() != "hmac-key" {
				res.good = fmt.Errorf("KeyId = %q", v.KeyId())
			} else {
				res.good = v.Verify([]byte(testSecret), httpsig.HMAC_SHA256)
			}
			res.bad = v.Verify([]byte(testSecret+"x"), httpsig.HMAC_SHA256)
		}
		// Tampering with a signed header must break the signature.
		r.Header.Set("Date", time.Now().Add(time.Second).UTC().Format(http.TimeFormat)+" ")
		r.Header.Set("Digest", "SHA-256=AAAA")
		if v2, err := httpsig.NewVerifier(r); err == nil {
			res.tampered = v2.Verify([]byte(testSecret), httpsig.HMAC_SHA256)
		} else {
			res.tampered = err
		}
		results <- res
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if _, _, err := (&Client{Endpoint: srv.URL, Secret: testSecret}).Find(context.Background(), sampleRequest()); err != nil {
		t.Fatal(err)
	}
	res := <-results
	if res.good != nil {
		t.Errorf("httpsig rejects our signature: %v", res.good)
	}
	if res.bad == nil {
		t.Errorf("httpsig accepts our signature with a wrong secret")
	}
	if res.tampered == nil {
		t.Errorf("httpsig accepts our signature after the signed headers changed")
	}
}

// --- NewRequest ---

// jsonPath reads a dotted path out of a decoded JSON object.
func jsonPath(t *testing.T, m map[string]any, path string) any {
	t.Helper()
	var cur any = m
	for p := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: %v is not an object", path, cur)
		}
		cur, ok = obj[p]
		if !ok {
			return nil
		}
	}
	return cur
}

func TestNewRequestJSON(t *testing.T) {
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	base := Source{
		PipelineID: "pl_42", PipelineName: "api", ProjectID: "proj_9",
		RepoURL: "https://github.com/octo/api.git", DefaultBranch: "main", ConfigPath: ".runnel/api.yaml",
		RunNumber: 12, Created: created, Link: "https://runnel.example.com/api/v1/runs/r_1",
	}
	tests := []struct {
		name    string
		trigger runnel.Trigger
		vars    map[string]string
		want    map[string]any
		absent  []string
	}{
		{
			name: "push",
			trigger: runnel.Trigger{Type: "event", Event: "push", Ref: "refs/heads/feature/x", Branch: "feature/x",
				Commit: "c0ffee", Before: "bada55", After: "c0ffee", Actor: "octocat", Author: "Octo Cat",
				Message: "fix things", Provider: "github"},
			vars: map[string]string{"DEPLOY": "no"},
			want: map[string]any{
				"build.event": "push", "build.after": "c0ffee", "build.before": "bada55",
				"build.ref": "refs/heads/feature/x", "build.source": "feature/x", "build.target": "feature/x",
				"build.trigger": "octocat", "build.sender": "octocat", "build.author_login": "Octo Cat",
				"build.message": "fix things", "build.params.DEPLOY": "no",
			},
			absent: []string{"build.cron", "build.title"},
		},
		{
			name: "tag",
			trigger: runnel.Trigger{Type: "event", Event: "tag", Ref: "refs/tags/v1.2.0", Tag: "v1.2.0",
				Commit: "7a6", Actor: "octocat"},
			want: map[string]any{
				"build.event": "tag", "build.ref": "refs/tags/v1.2.0", "build.source": "v1.2.0", "build.target": "v1.2.0",
				"build.after": "7a6",
			},
		},
		{
			name: "pull request",
			trigger: runnel.Trigger{Type: "event", Event: "pull_request", Ref: "refs/pull/5/head", Branch: "topic",
				Commit: "feed", After: "feed", Action: "opened",
				PullRequest: runnel.PullRequest{Number: 5, Title: "Add topic", Head: "topic", Base: "develop"}},
			want: map[string]any{
				"build.event": "pull_request", "build.action": "opened", "build.ref": "refs/pull/5/head",
				"build.source": "topic", "build.target": "develop", "build.title": "Add topic",
				"build.after": "feed", "build.trigger": "@hook", "build.sender": "",
			},
			absent: []string{"build.params"},
		},
		{
			name: "pull request without a ref on gitlab",
			trigger: runnel.Trigger{Type: "event", Event: "pull_request", Provider: "gitlab", Commit: "feed",
				PullRequest: runnel.PullRequest{Number: 8, Head: "topic", Base: "main"}},
			want: map[string]any{"build.event": "pull_request", "build.ref": "refs/merge-requests/8/head"},
		},
		{
			name:    "cron",
			trigger: runnel.Trigger{Type: "cron", Event: "cron", Actor: "cron"},
			want: map[string]any{
				"build.event": "cron", "build.trigger": "@cron", "build.cron": "cron", "build.ref": "refs/heads/main",
				"build.source": "main", "build.target": "main", "build.after": "",
			},
		},
		{
			name:    "manual",
			trigger: runnel.Trigger{Type: "manual", Event: "manual", Actor: "alice", Commit: "1234"},
			vars:    map[string]string{"TARGET": "staging", "DEBUG": "1"},
			want: map[string]any{
				"build.event": "custom", "build.trigger": "alice", "build.sender": "alice", "build.ref": "refs/heads/main",
				"build.source": "main", "build.target": "main", "build.after": "1234",
				"build.params.TARGET": "staging", "build.params.DEBUG": "1",
			},
			absent: []string{"build.cron"},
		},
		{
			name:    "manual on a branch",
			trigger: runnel.Trigger{Type: "manual", Event: "manual", Actor: "alice", Branch: "release"},
			want: map[string]any{
				"build.event": "custom", "build.ref": "refs/heads/release", "build.source": "release", "build.target": "release",
			},
		},
	}
	common := map[string]any{
		"repo.slug": "octo/api", "repo.namespace": "octo", "repo.name": "api", "repo.uid": "pl_42",
		"repo.scm": "git", "repo.git_http_url": "https://github.com/octo/api.git", "repo.git_ssh_url": "",
		"repo.link": "https://github.com/octo/api", "repo.default_branch": "main",
		"repo.config_path": ".runnel/api.yaml", "repo.active": true,
		"build.number": float64(12), "build.status": "pending",
		"build.link":    "https://runnel.example.com/api/v1/runs/r_1",
		"build.created": float64(created.Unix()), "build.updated": float64(created.Unix()),
		"build.timestamp": float64(created.Unix()),
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			s.Trigger, s.Variables = tc.trigger, tc.vars
			raw, err := json.Marshal(NewRequest(s))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			for path, want := range common {
				if got := jsonPath(t, m, path); got != want {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			for path, want := range tc.want {
				if got := jsonPath(t, m, path); got != want {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			for _, path := range tc.absent {
				if got := jsonPath(t, m, path); got != nil {
					t.Errorf("%s = %#v, want it absent", path, got)
				}
			}
			if t.Failed() {
				t.Logf("JSON: %s", raw)
			}
		})
	}
}

func TestNewRequestWithoutRepoURL(t *testing.T) {
	r := NewRequest(Source{PipelineID: "pl_1", PipelineName: "nightly", ProjectID: "proj_3",
		Trigger: runnel.Trigger{Type: "manual"}})
	if r.Repo.Namespace != "proj_3" || r.Repo.Name != "nightly" || r.Repo.Slug != "proj_3/nightly" {
		t.Errorf("repo = %+v", r.Repo)
	}
	if r.Build.Event != "custom" || r.Build.Ref != "" || r.Build.Created != 0 {
		t.Errorf("build = %+v", r.Build)
	}
	r = NewRequest(Source{PipelineName: "nightly"})
	if r.Repo.Slug != "runnel/nightly" {
		t.Errorf("slug = %q, want runnel/nightly", r.Repo.Slug)
	}
	if r.Build.Event != "push" || r.Build.Trigger != "@hook" {
		t.Errorf("build = %+v", r.Build)
	}
}

func TestNewRequestParamsAreCopied(t *testing.T) {
	vars := map[string]string{"A": "1"}
	r := NewRequest(Source{Variables: vars})
	vars["A"] = "2"
	if r.Build.Params["A"] != "1" {
		t.Errorf("params share the caller's map")
	}
}

func TestParseRepoURL(t *testing.T) {
	tests := []struct {
		raw             string
		namespace, name string
		http, ssh, link string
	}{
		{raw: "https://github.com/octo/api.git", namespace: "octo", name: "api",
			http: "https://github.com/octo/api.git", link: "https://github.com/octo/api"},
		{raw: "https://github.com/octo/api", namespace: "octo", name: "api",
			http: "https://github.com/octo/api", link: "https://github.com/octo/api"},
		{raw: "https://github.com/octo/api/", namespace: "octo", name: "api",
			http: "https://github.com/octo/api/", link: "https://github.com/octo/api"},
		{raw: "http://git.local:3000/team/svc.git", namespace: "team", name: "svc",
			http: "http://git.local:3000/team/svc.git", link: "http://git.local:3000/team/svc"},
		{raw: "https://gitlab.com/group/sub/deeper/proj.git", namespace: "group/sub/deeper", name: "proj",
			http: "https://gitlab.com/group/sub/deeper/proj.git", link: "https://gitlab.com/group/sub/deeper/proj"},
		{raw: "https://x-access-token:tok123@github.com/octo/api.git", namespace: "octo", name: "api",
			http: "https://github.com/octo/api.git", link: "https://github.com/octo/api"},
		{raw: "  https://github.com/octo/api.git\n", namespace: "octo", name: "api",
			http: "https://github.com/octo/api.git", link: "https://github.com/octo/api"},
		{raw: "ssh://git@github.com/octo/api.git", namespace: "octo", name: "api",
			ssh: "ssh://git@github.com/octo/api.git"},
		{raw: "ssh://git@git.example.com:2222/group/sub/proj.git", namespace: "group/sub", name: "proj",
			ssh: "ssh://git@git.example.com:2222/group/sub/proj.git"},
		{raw: "git+ssh://git@host/o/n.git", namespace: "o", name: "n", ssh: "git+ssh://git@host/o/n.git"},
		{raw: "git@github.com:octo/api.git", namespace: "octo", name: "api", ssh: "git@github.com:octo/api.git"},
		{raw: "git@gitlab.com:group/sub/proj.git", namespace: "group/sub", name: "proj",
			ssh: "git@gitlab.com:group/sub/proj.git"},
		{raw: "github.com:octo/api", namespace: "octo", name: "api", ssh: "github.com:octo/api"},
		{raw: "git@host:/srv/repos/app.git", namespace: "srv/repos", name: "app", ssh: "git@host:/srv/repos/app.git"},
		{raw: "git@host:app.git", namespace: "", name: "app", ssh: "git@host:app.git"},
		{raw: "git://git.example.com/o/n.git", namespace: "o", name: "n", http: "git://git.example.com/o/n.git"},
		{raw: "/srv/git/team/app.git", namespace: "srv/git/team", name: "app", http: "/srv/git/team/app.git"},
		{raw: "https://github.com/", http: "https://github.com/"},
		{raw: "https://github.com/octo", namespace: "", name: "octo",
			http: "https://github.com/octo", link: "https://github.com/octo"},
		{raw: ""},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			loc := parseRepoURL(tc.raw)
			if loc.namespace != tc.namespace || loc.name != tc.name {
				t.Errorf("namespace/name = %q/%q, want %q/%q", loc.namespace, loc.name, tc.namespace, tc.name)
			}
			repo := newRepo(Source{RepoURL: tc.raw, PipelineName: "pl", ProjectID: "proj"})
			if repo.HTTPURL != tc.http || repo.SSHURL != tc.ssh || repo.Link != tc.link {
				t.Errorf("http/ssh/link = %q %q %q, want %q %q %q", repo.HTTPURL, repo.SSHURL, repo.Link, tc.http, tc.ssh, tc.link)
			}
			wantNS, wantName := tc.namespace, tc.name
			if wantNS == "" {
				wantNS = "proj"
			}
			if wantName == "" {
				wantName = "pl"
			}
			if repo.Slug != wantNS+"/"+wantName {
				t.Errorf("slug = %q, want %q", repo.Slug, wantNS+"/"+wantName)
			}
		})
	}
}
