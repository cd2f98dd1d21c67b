package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// hookRecorder is a local HTTP receiver that keeps what it is sent.
type hookRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
	status int
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.heads = append(h.heads, r.Header.Clone())
	status := h.status
	h.mu.Unlock()
	if status != 0 {
		http.Error(w, "receiver exploded", status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *hookRecorder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

// mailBox is a go-smtp backend keeping what it receives.
type mailBox struct {
	mu   sync.Mutex
	msgs []string
	rcpt [][]string
}

func (b *mailBox) NewSession(*smtp.Conn) (smtp.Session, error) { return &mailSession{b: b}, nil }

type mailSession struct {
	b  *mailBox
	to []string
}

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, string(b))
	s.b.rcpt = append(s.b.rcpt, s.to)
	s.b.mu.Unlock()
	return nil
}
func (s *mailSession) Reset()        { s.to = nil }
func (s *mailSession) Logout() error { return nil }

// TestNotifications: a failed run notifies a signed webhook, Slack and
// email (real local HTTP and SMTP receivers); a receiver that keeps failing
// is retried, then its failure is recorded on the run, whose status stays
// what it was; a successful run notifies only the rules that ask for it.
func TestNotifications(t *testing.T) {
	hook, slack, broken := &hookRecorder{}, &hookRecorder{}, &hookRecorder{status: http.StatusInternalServerError}
	hookSrv, slackSrv, brokenSrv := httptest.NewServer(hook), httptest.NewServer(slack), httptest.NewServer(broken)
	defer hookSrv.Close()
	defer slackSrv.Close()
	defer brokenSrv.Close()
	box := &mailBox{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := smtp.NewServer(box)
	ms.Domain = "mx.test"
	ms.ErrorLog = log.New(io.Discard, "", 0)
	go ms.Serve(ln)
	defer ms.Close()

	srv := startServerProc(t, "server", "", "--embedded-agent-capacity", "2", "--smtp-addr", ln.Addr().String(), "--smtp-from", "ci@example.test",
		"--smtp-tls", "none", "--notify-attempts", "2", "--external-url", "http://ci.example.test")
	c := &client{t: t, base: "http://" + srv.addr}
	spec := `{"namespace":"t","variables":{"FAIL":"yes"},
		"notify":[
			{"on":["failure","cancelled"],"webhook":{"url":"` + hookSrv.URL + `/hook","secret":"${{ secrets.HOOK_SECRET }}"},
			 "slack":{"webhookUrl":"` + slackSrv.URL + `/services/T0/B0/XYZ","channel":"#ci"}},
			{"on":["always"],"email":{"to":["dev@example.test"]}},
			{"on":["failure"],"webhook":{"url":"` + brokenSrv.URL + `/down"}},
			{"on":["success"],"webhook":{"url":"` + hookSrv.URL + `/success"}}],
		"jobs":[{"name":"build","steps":[{"run":"test \"${{ variables.FAIL }}\" != yes"}]}]}`
	p := c.createPipeline("notified", spec)
	const hookSecret = "hook-secret-0123456789"
	if env := c.do("POST", "/api/v1/secrets", map[string]any{"name": "HOOK_SECRET", "value": hookSecret, "pipelineId": p}, nil); env.Code != 0 {
		t.Fatalf("create secret: %+v", env)
	}
	run := c.trigger(p, "")
	d := c.waitRun(run, 30*time.Second, final)
	if d.Status != "failed" {
		t.Fatalf("run: %s", d.Status)
	}
	waitFor(t, 20*time.Second, "webhook, Slack, email and the broken receiver's failure", func() bool {
		c.waitRun(run, time.Second, final)
		var dd runDetail
		c.do("GET", "/api/v1/pipelines/runs/"+run, nil, &dd)
		failed := false
		for _, e := range dd.Timeline {
			failed = failed || e.Action == "notification_failed"
		}
		box.mu.Lock()
		mails := len(box.msgs)
		box.mu.Unlock()
		return hook.count() == 1 && slack.count() == 1 && mails == 1 && failed
	})

	// The webhook: JSON about the run, signed with the secret's value.
	hook.mu.Lock()
	body, head := hook.bodies[0], hook.heads[0]
	hook.mu.Unlock()
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	if got, want := head.Get("X-Runnel-Signature-256"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("webhook signature %q, want %q", got, want)
	}
	var wb struct {
		Event    string `json:"event"`
		Pipeline struct{ Name string }
		Run      struct {
			ID, Status, URL string
		}
		Jobs []struct{ Key, Status string }
	}
	if err := json.Unmarshal(body, &wb); err != nil {
		t.Fatalf("webhook body %s: %v", body, err)
	}
	if wb.Event != "run.finished" || wb.Pipeline.Name != "notified" || wb.Run.ID != run || wb.Run.Status != "failed" ||
		wb.Run.URL != "http://ci.example.test/api/v1/pipelines/runs/"+run || len(wb.Jobs) != 1 || wb.Jobs[0].Status != "failed" {
		t.Errorf("webhook body: %s", body)
	}
	// Slack: the incoming-webhook format.
	slack.mu.Lock()
	var sb map[string]any
	_ = json.Unmarshal(slack.bodies[0], &sb)
	slack.mu.Unlock()
	if sb["channel"] != "#ci" || !strings.Contains(sb["text"].(string), "notified") || !strings.Contains(sb["text"].(string), "failed") {
		t.Errorf("slack message: %v", sb)
	}
	// Email.
	box.mu.Lock()
	mail, rcpt := box.msgs[0], box.rcpt[0]
	box.mu.Unlock()
	if len(rcpt) != 1 || rcpt[0] != "dev@example.test" || !strings.Contains(mail, "Subject: [notified] run #1 failed") {
		t.Errorf("email to %v:\n%s", rcpt, mail)
	}
	// The broken receiver was tried twice; its failure is on the run, and
	// nothing about it changed the run.
	if n := broken.count(); n != 2 {
		t.Errorf("the broken receiver was tried %d times, want 2 (--notify-attempts)", n)
	}
	var dd struct {
		Status   string `json:"status"`
		Timeline []struct {
			Action, Reason string
		} `json:"timeline"`
	}
	c.do("GET", "/api/v1/pipelines/runs/"+run, nil, &dd)
	found := false
	for _, e := range dd.Timeline {
		if e.Action == "notification_failed" {
			found = true
			if !strings.Contains(e.Reason, "500") || !strings.Contains(e.Reason, brokenSrv.URL+"/down") {
				t.Errorf("failure reason: %q", e.Reason)
			}
		}
	}
	if !found || dd.Status != "failed" {
		t.Errorf("run %s, timeline %+v", dd.Status, dd.Timeline)
	}
	if strings.Contains(srv.tailLogs(2000), hookSecret) {
		t.Errorf("the webhook secret appears in the server log")
	}

	// A successful run: only the success and always rules.
	var tr struct {
		RunID string `json:"runId"`
	}
	if env := c.do("POST", "/api/v1/pipelines/"+p+"/trigger", map[string]any{"variables": map[string]string{"FAIL": "no"}}, &tr); env.Code != 0 {
		t.Fatalf("trigger: %+v", env)
	}
	if d := c.waitRun(tr.RunID, 30*time.Second, final); d.Status != "success" {
		t.Fatalf("second run: %s", d.Status)
	}
	waitFor(t, 20*time.Second, "the success webhook and the second email", func() bool {
		box.mu.Lock()
		defer box.mu.Unlock()
		return hook.count() == 2 && len(box.msgs) == 2
	})
	time.Sleep(500 * time.Millisecond)
	hook.mu.Lock()
	if len(hook.bodies) != 2 || !strings.Contains(string(hook.bodies[1]), `"status":"success"`) {
		t.Errorf("after a success: %d webhook calls", len(hook.bodies))
	}
	hook.mu.Unlock()
	if slack.count() != 1 || broken.count() != 2 {
		t.Errorf("a success notified failure-only rules: slack %d, broken %d", slack.count(), broken.count())
	}
}
