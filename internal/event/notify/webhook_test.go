package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type captured struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// recorder starts a server that records one request and answers with code.
func recorder(t *testing.T, code int) (*httptest.Server, chan captured) {
	t.Helper()
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		got <- captured{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: b}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestWebhookSigned(t *testing.T) {
	srv, got := recorder(t, http.StatusNoContent)
	m := testMessage("https://ci.example.com/runs/run-1")
	if err := Webhook(context.Background(), srv.Client(), srv.URL+"/hook", "s3cret", m); err != nil {
		t.Fatalf("Webhook: %v", err)
	}
	c := <-got
	if c.method != http.MethodPost || c.path != "/hook" {
		t.Errorf("request %s %s, want POST /hook", c.method, c.path)
	}
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "Runnel",
		"X-Runnel-Event":    "run.finished",
		"X-Runnel-Delivery": "dlv-0001",
	} {
		if v := c.header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}

	// Verify the signature independently over the raw bytes received.
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(c.body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if sig := c.header.Get("X-Runnel-Signature-256"); !hmac.Equal([]byte(sig), []byte(want)) {
		t.Errorf("signature %q, want %q", sig, want)
	}

	// The documented shape, member by member.
	var raw map[string]any
	if err := json.Unmarshal(c.body, &raw); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, c.body)
	}
	if raw["event"] != "run.finished" || raw["deliveryId"] != "dlv-0001" {
		t.Errorf("event/deliveryId = %v/%v", raw["event"], raw["deliveryId"])
	}
	pl, _ := raw["pipeline"].(map[string]any)
	if pl["id"] != "pl-1" || pl["name"] != "build" {
		t.Errorf("pipeline = %v", raw["pipeline"])
	}
	run, _ := raw["run"].(map[string]any)
	for k, want := range map[string]any{
		"id": "run-1", "number": float64(12), "status": "failed", "reason": "a job failed",
		"triggerType": "manual", "triggeredBy": "alice", "branch": "main",
		"commit": "0123456789abcdef0123456789abcdef01234567", "url": "https://ci.example.com/runs/run-1",
		"createdAt": "2025-01-02T03:04:05Z", "startedAt": "2025-01-02T03:04:06Z", "endedAt": "2025-01-02T03:09:06Z",
	} {
		if run[k] != want {
			t.Errorf("run.%s = %#v, want %#v", k, run[k], want)
		}
	}
	jobs, _ := raw["jobs"].([]any)
	if len(jobs) != 3 {
		t.Fatalf("jobs = %v", raw["jobs"])
	}
	j1, _ := jobs[1].(map[string]any)
	for k, want := range map[string]any{"key": "test", "name": "Unit tests", "stage": "check", "status": "failed", "reason": "exit 1 <script>&"} {
		if j1[k] != want {
			t.Errorf("jobs[1].%s = %#v, want %#v", k, j1[k], want)
		}
	}

	var body WebhookBody
	if err := json.Unmarshal(c.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Run.StartedAt == nil || !body.Run.StartedAt.Equal(*m.Run.StartedAt) || body.Jobs[1] != m.Jobs[1] {
		t.Errorf("decoded body %+v differs from the message", body)
	}
}

func TestWebhookNoSecretNoJobs(t *testing.T) {
	srv, got := recorder(t, http.StatusOK)
	m := Message{DeliveryID: "d2", Pipeline: Pipeline{ID: "p"}, Run: Run{ID: "r", Status: "success"}}
	if err := Webhook(context.Background(), nil, srv.URL, "", m); err != nil {
		t.Fatalf("Webhook: %v", err)
	}
	c := <-got
	if _, ok := c.header["X-Runnel-Signature-256"]; ok {
		t.Errorf("signature header sent without a secret: %q", c.header.Get("X-Runnel-Signature-256"))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(c.body, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["jobs"]) != "[]" {
		t.Errorf("jobs = %s, want []", raw["jobs"])
	}
	var run map[string]json.RawMessage
	_ = json.Unmarshal(raw["run"], &run)
	if string(run["startedAt"]) != "null" || string(run["endedAt"]) != "null" || string(run["reason"]) != `""` {
		t.Errorf("run = %s: want every member, null times", raw["run"])
	}
}

func TestWebhookServerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, strings.Repeat("x", 199)+"yTAIL-NOT-SHOWN")
	}))
	defer srv.Close()
	// Credentials in the user info and the query must not show.
	u := strings.Replace(srv.URL, "http://", "http://user:pa55word@", 1) + "/hook?token=t0ps3cret"
	err := Webhook(context.Background(), srv.Client(), u, "s", testMessage(""))
	if err == nil {
		t.Fatal("want an error for HTTP 500")
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != 500 {
		t.Errorf("error %v is not an *HTTPError with status 500", err)
	}
	for _, want := range []string{"500", srv.URL + "/hook", strings.Repeat("x", 199) + "y"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	for _, secret := range []string{"TAIL", "pa55word", "t0ps3cret", "user:"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q reveals %q", msg, secret)
		}
	}
}

func TestWebhookRedirectIsError(t *testing.T) {
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere?key=k", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Store(true)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	err := Webhook(context.Background(), srv.Client(), srv.URL+"/hook", "", testMessage(""))
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Fatalf("err = %v, want an error naming 307", err)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "/elsewhere?…") || strings.Contains(err.Error(), "key=k") {
		t.Errorf("error %q does not name the redirect's target without its query", err)
	}
	if followed.Load() {
		t.Error("the redirect was followed")
	}
	// The caller's client keeps its own redirect policy.
	if srv.Client().CheckRedirect != nil {
		t.Error("the caller's client was modified")
	}
}

func TestWebhookContextTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only once the body is read does the server notice a client
		// hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Webhook(ctx, srv.Client(), srv.URL+"/x?secret=zzz", "", testMessage(""))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if strings.Contains(err.Error(), "zzz") {
		t.Errorf("error %q reveals the query", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestWebhookInvalidURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x/y", "/relative", "http://"} {
		if err := Webhook(context.Background(), nil, u, "", testMessage("")); err == nil {
			t.Errorf("Webhook(%q) succeeded", u)
		}
	}
}

func TestSignature(t *testing.T) {
	// RFC 4231 test case 2.
	got := Signature("Jefe", []byte("what do ya want for nothing?"))
	want := "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got != want {
		t.Errorf("Signature = %s, want %s", got, want)
	}
}
