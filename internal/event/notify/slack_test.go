package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

type slackMsg struct {
	Text        string `json:"text"`
	Channel     string `json:"channel"`
	Attachments []struct {
		Color     string `json:"color"`
		Title     string `json:"title"`
		TitleLink string `json:"title_link"`
		Text      string `json:"text"`
		Fallback  string `json:"fallback"`
		Fields    []struct {
			Title, Value string
		} `json:"fields"`
	} `json:"attachments"`
}

func TestSlack(t *testing.T) {
	srv, got := recorder(t, http.StatusOK)
	m := testMessage("https://ci.example.com/runs/run-1?tab=jobs&x=1")
	m.Pipeline.Name = "build <&> deploy"
	if err := Slack(context.Background(), srv.Client(), srv.URL+"/services/T/B/X", "#ci", m); err != nil {
		t.Fatalf("Slack: %v", err)
	}
	c := <-got
	if c.method != http.MethodPost || c.path != "/services/T/B/X" || c.header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s %q", c.method, c.path, c.header.Get("Content-Type"))
	}
	var p slackMsg
	if err := json.Unmarshal(c.body, &p); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, c.body)
	}
	wantText := "<https://ci.example.com/runs/run-1?tab=jobs&x=1|build &lt;&amp;&gt; deploy run #12> failed: a job failed"
	if p.Text != wantText {
		t.Errorf("text = %q\nwant   %q", p.Text, wantText)
	}
	if p.Channel != "#ci" {
		t.Errorf("channel = %q", p.Channel)
	}
	if len(p.Attachments) != 1 {
		t.Fatalf("attachments = %d, want 1: %s", len(p.Attachments), c.body)
	}
	a := p.Attachments[0]
	if a.Color != "danger" {
		t.Errorf("color = %q, want danger", a.Color)
	}
	if !strings.Contains(a.Text, "Unit tests") || !strings.Contains(a.Text, "exit 1 &lt;script&gt;&amp;") {
		t.Errorf("attachment text %q lacks the escaped failed job", a.Text)
	}
	if strings.Contains(a.Text, "Lint") || strings.Contains(a.Text, "Deploy") {
		t.Errorf("attachment text %q lists jobs that did not fail", a.Text)
	}
	if strings.Contains(string(c.body), "<script>") {
		t.Errorf("unescaped <script> in %s", c.body)
	}
	if a.TitleLink != m.Run.URL {
		t.Errorf("title_link = %q", a.TitleLink)
	}
}

func TestSlackNoChannelNoURL(t *testing.T) {
	srv, got := recorder(t, http.StatusOK)
	m := Message{Pipeline: Pipeline{Name: "p"}, Run: Run{Number: 3, Status: "success"}}
	if err := Slack(context.Background(), nil, srv.URL, "", m); err != nil {
		t.Fatal(err)
	}
	c := <-got
	var raw map[string]any
	if err := json.Unmarshal(c.body, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["channel"]; ok {
		t.Errorf("channel sent though empty: %s", c.body)
	}
	if raw["text"] != "p run #3 success" {
		t.Errorf("text = %q", raw["text"])
	}
}

func TestSlackColors(t *testing.T) {
	for status, want := range map[string]string{"success": "good", "failed": "danger", "cancelled": "warning", "partial": "warning"} {
		p := newSlackPayload("", Message{Run: Run{Status: status}})
		if p.Attachments[0].Color != want {
			t.Errorf("%s: color %q, want %q", status, p.Attachments[0].Color, want)
		}
	}
}

func TestSlackErrorHidesPath(t *testing.T) {
	srv, _ := recorder(t, http.StatusNotFound)
	err := Slack(context.Background(), srv.Client(), srv.URL+"/services/T000/B000/XXXXSECRET", "", testMessage(""))
	if err == nil {
		t.Fatal("want an error for 404")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), srv.URL+"/…") {
		t.Errorf("error %q lacks the status or the host", err)
	}
	if strings.Contains(err.Error(), "XXXXSECRET") || strings.Contains(err.Error(), "services") {
		t.Errorf("error %q reveals the webhook path", err)
	}

	// A connection error (closed server) hides it as well.
	srv.Close()
	err = Slack(context.Background(), nil, srv.URL+"/services/T000/B000/XXXXSECRET", "", testMessage(""))
	if err == nil || strings.Contains(err.Error(), "XXXXSECRET") {
		t.Errorf("err = %v", err)
	}
}
