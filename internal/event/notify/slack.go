package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/safeurl"
)

// maxSlackJobs bounds how many failed jobs a Slack message lists.
const maxSlackJobs = 10

// slackPayload is an incoming-webhook message.
type slackPayload struct {
	Text        string            `json:"text"`
	Channel     string            `json:"channel,omitempty"`
	Attachments []slackAttachment `json:"attachments,omitempty"`
}

// slackAttachment is a legacy attachment: the only way to get a colour bar.
type slackAttachment struct {
	Color     string       `json:"color"`
	Fallback  string       `json:"fallback"`
	Title     string       `json:"title"`
	TitleLink string       `json:"title_link,omitempty"`
	Text      string       `json:"text,omitempty"`
	Fields    []slackField `json:"fields,omitempty"`
	Footer    string       `json:"footer,omitempty"`
	Ts        int64        `json:"ts,omitempty"`
	MrkdwnIn  []string     `json:"mrkdwn_in,omitempty"`
}

type slackField struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// slackColor is the attachment colour for a run status.
func slackColor(status string) string {
	switch runnel.RunStatus(status) {
	case runnel.RunSuccess:
		return "good"
	case runnel.RunFailed:
		return "danger"
	default:
		return "warning"
	}
}

// slackEscape escapes the characters Slack gives a meaning to in message
// text: &, < and >.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackLinkURL makes a URL safe inside <url|text>: the characters that would
// end the link are percent-encoded.
func slackLinkURL(u string) string {
	return strings.NewReplacer("|", "%7C", "<", "%3C", ">", "%3E", " ", "%20").Replace(u)
}

// slackLink is a mrkdwn link <url|text>, or the escaped text alone when
// there is no URL.
func slackLink(url, text string) string {
	text = slackEscape(text)
	if url == "" {
		return text
	}
	// A | in the label would be taken as part of it, but keep it unambiguous.
	text = strings.ReplaceAll(text, "|", "¦")
	return "<" + slackLinkURL(url) + "|" + text + ">"
}

// oneLine folds whitespace (newlines included) to single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate cuts s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// newSlackPayload builds the message Slack sends for m.
func newSlackPayload(channel string, m Message) slackPayload {
	name := m.pipelineName()
	title := fmt.Sprintf("%s run #%d", name, m.Run.Number)
	text := fmt.Sprintf("%s %s", slackLink(m.Run.URL, title), slackEscape(m.Run.Status))
	if m.Run.Reason != "" {
		text += ": " + slackEscape(truncate(oneLine(m.Run.Reason), 200))
	}

	var body []string
	failed := m.failedJobs()
	for i, j := range failed {
		if i == maxSlackJobs {
			body = append(body, fmt.Sprintf("… and %d more failed jobs", len(failed)-maxSlackJobs))
			break
		}
		line := "• *" + slackEscape(oneLine(jobName(j))) + "*"
		if j.Stage != "" {
			line += " (" + slackEscape(oneLine(j.Stage)) + ")"
		}
		line += " failed"
		if j.Reason != "" {
			line += ": " + slackEscape(truncate(oneLine(j.Reason), 300))
		}
		body = append(body, line)
	}

	var fields []slackField
	if m.Run.Branch != "" {
		fields = append(fields, slackField{Title: "Branch", Value: slackEscape(m.Run.Branch), Short: true})
	}
	if m.Run.Commit != "" {
		fields = append(fields, slackField{Title: "Commit", Value: slackEscape(shortCommit(m.Run.Commit)), Short: true})
	}
	if m.Run.TriggerType != "" {
		v := m.Run.TriggerType
		if m.Run.TriggeredBy != "" {
			v += " by " + m.Run.TriggeredBy
		}
		fields = append(fields, slackField{Title: "Trigger", Value: slackEscape(v), Short: true})
	}
	if d := m.duration(); d > 0 {
		fields = append(fields, slackField{Title: "Duration", Value: d.String(), Short: true})
	}

	att := slackAttachment{
		Color: slackColor(m.Run.Status),
		// Fallback is plain text shown where attachments are not.
		Fallback:  slackEscape(fmt.Sprintf("%s run #%d %s", name, m.Run.Number, m.Run.Status)),
		Title:     slackEscape(title),
		TitleLink: m.Run.URL,
		Text:      strings.Join(body, "\n"),
		Fields:    fields,
		Footer:    "Runnel",
		MrkdwnIn:  []string{"text"},
	}
	if m.Run.EndedAt != nil {
		att.Ts = m.Run.EndedAt.Unix()
	}
	return slackPayload{Text: text, Channel: channel, Attachments: []slackAttachment{att}}
}

// Slack posts an incoming-webhook message to webhookURL: a one-line "text"
// summary with a link to the run in mrkdwn <url|text> form, "channel" when
// channel is not empty, and one attachment coloured by status (good for
// success, danger for failed, warning otherwise) listing the failed jobs.
// User text has &, < and > escaped as Slack requires.
//
// A 2xx answer is success. Redirects are not followed; ctx bounds the
// request; hc may be nil. As a Slack webhook URL's path is its secret,
// errors show only its scheme and host.
func Slack(ctx context.Context, hc *http.Client, webhookURL, channel string, m Message) error {
	body, err := json.Marshal(newSlackPayload(channel, m))
	if err != nil {
		return fmt.Errorf("slack: encoding the message: %w", err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Runnel")
	if err := post(ctx, hc, webhookURL, safeurl.Host, body, h); err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	return nil
}
