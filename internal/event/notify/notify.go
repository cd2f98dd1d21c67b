// Package notify sends a pipeline run's end-of-run notification through the
// channels a pipeline declares under notify: a signed JSON webhook, a Slack
// incoming webhook and e-mail over SMTP.
//
// Each channel is one function call that either delivers the message or
// returns an error; retrying (with the same Message, so with the same
// DeliveryID) is the caller's business, typically the outbox's.
//
// Errors never reveal secrets: an HTTP error names the URL with its secret
// parts hidden (a Slack webhook URL shows only its scheme and host, a generic
// webhook URL loses its user info and query), the status code and the first
// 200 bytes of the answer; an SMTP error names the server and its reply.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/runnel-ci/runnel"
)

// Matches reports whether a rule's on list covers a run's final status.
//
// The on values are those of the pipeline spec: success, failure (the status
// failed), cancelled, partial, and always, which covers the four final
// statuses. A status that is not final (pending, running, paused, …) is
// never matched.
func Matches(on []string, status string) bool {
	st := runnel.RunStatus(status)
	if !st.Terminal() {
		return false
	}
	for _, o := range on {
		switch o {
		case "always":
			return true
		case "failure":
			if st == runnel.RunFailed {
				return true
			}
		case string(runnel.RunSuccess), string(runnel.RunCancelled), string(runnel.RunPartial):
			if o == status {
				return true
			}
		}
	}
	return false
}

// Message is what every channel says about one finished run.
//
// Its JSON form (the "pipeline", "run" and "jobs" members of the webhook
// body, see WebhookBody) is part of the webhook's stable contract.
type Message struct {
	// DeliveryID is stable for one notification (the same on every retry),
	// so that receivers can de-duplicate.
	DeliveryID string
	Pipeline   Pipeline
	Run        Run
	Jobs       []Job
}

// Pipeline names the pipeline the run belongs to.
type Pipeline struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Run describes the finished run.
type Run struct {
	ID     string `json:"id"`
	Number int64  `json:"number"`
	// Status is the final status: success, failed, cancelled or partial.
	Status string `json:"status"`
	// Reason says why the run ended so, when known (may be empty).
	Reason      string `json:"reason"`
	TriggerType string `json:"triggerType"`
	TriggeredBy string `json:"triggeredBy"`
	Commit      string `json:"commit"`
	Branch      string `json:"branch"`
	// URL is the run's page in the web UI (may be empty).
	URL       string     `json:"url"`
	CreatedAt time.Time  `json:"createdAt"`
	StartedAt *time.Time `json:"startedAt"`
	EndedAt   *time.Time `json:"endedAt"`
}

// Job describes one job of the run.
type Job struct {
	Key   string `json:"key"`
	Name  string `json:"name"`
	Stage string `json:"stage"`
	// Status is the job's final status: success, failed, cancelled or
	// skipped.
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// failedJobs returns the jobs whose status is failed.
func (m *Message) failedJobs() []Job {
	var out []Job
	for _, j := range m.Jobs {
		if j.Status == string(runnel.JobFailed) {
			out = append(out, j)
		}
	}
	return out
}

// pipelineName is the pipeline's name, or its ID when it has none.
func (m *Message) pipelineName() string {
	if m.Pipeline.Name != "" {
		return m.Pipeline.Name
	}
	if m.Pipeline.ID != "" {
		return m.Pipeline.ID
	}
	return "pipeline"
}

// jobName is the job's name, or its key when it has none.
func jobName(j Job) string {
	if j.Name != "" {
		return j.Name
	}
	return j.Key
}

// duration is the run's wall time, or 0 when unknown.
func (m *Message) duration() time.Duration {
	if m.Run.StartedAt == nil || m.Run.EndedAt == nil {
		return 0
	}
	d := m.Run.EndedAt.Sub(*m.Run.StartedAt)
	if d < 0 {
		return 0
	}
	return d.Round(time.Second)
}

// shortCommit is the first 12 characters of a commit hash.
func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// maxErrBody is how much of an HTTP answer an error quotes.
const maxErrBody = 200

// defaultHTTPTimeout bounds a request made with a nil *http.Client.
const defaultHTTPTimeout = 30 * time.Second

// post sends body to rawURL with the given headers and succeeds on a 2xx.
// Redirects are never followed; redact shows a URL in errors without its
// secrets.
func post(ctx context.Context, hc *http.Client, rawURL string, redact func(string) string, body []byte, header http.Header) error {
	shown := redact(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("POST %s: invalid URL: want an absolute http or https URL", shown)
	}
	var c http.Client
	if hc != nil {
		c = *hc
	} else {
		c.Timeout = defaultHTTPTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("POST %s: %w", shown, unwrapURLError(err))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", shown, unwrapURLError(err))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("POST %s: HTTP %d %s", shown, resp.StatusCode, http.StatusText(resp.StatusCode))
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirects are not followed)"
		if loc, err := resp.Location(); err == nil {
			msg += " to " + redact(loc.String())
		}
	}
	if s := printable(head); s != "" {
		msg += ": " + strconv.Quote(s)
	}
	return &HTTPError{StatusCode: resp.StatusCode, msg: msg}
}

// HTTPError is returned when a receiver answers with a status that is not
// 2xx (a redirect included).
type HTTPError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	msg        string
}

func (e *HTTPError) Error() string { return e.msg }

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// full URL with its secrets.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// printable makes an answer's head fit on one line of a log: valid UTF-8,
// trimmed, with a cut multi-byte character dropped.
func printable(b []byte) string {
	for len(b) > 0 && !utf8.Valid(b) {
		r, size := utf8.DecodeLastRune(b)
		if r != utf8.RuneError || size != 1 {
			break
		}
		b = b[:len(b)-1]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.TrimFunc(s, unicode.IsSpace)
}
