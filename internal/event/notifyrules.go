package event

import (
	"context"
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel/internal/event/notify"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/spec"
)

// notification is what a finished run's notify rules ask for: the message
// and the channels of every rule whose `on` covers the run's status.
type notification struct {
	Message  notify.Message
	Channels []channel
}

// channel is one channel of one rule, with its templates evaluated.
type channel struct {
	// Key is stable for the run: "<rule index>.<kind>", e.g. "0.webhook".
	Key  string
	Kind string // webhook | slack | email
	// URL is the webhook's or Slack's URL; Secret the webhook's signing
	// secret; SlackChannel the Slack channel override.
	URL, Secret, SlackChannel string
	To                        []string
	Subject                   string
	// Err says why the channel cannot be sent (a template that does not
	// evaluate); the notifier records it as the channel's failure.
	Err string
}

// notification evaluates the notify rules of a finished run (its own
// definition, with the run-level contexts and the pipeline's secrets).
func (n *Notifier) notification(ctx context.Context, runID string) (*notification, error) {
	// Most definitions have no notify rules: find that out before reading
	// what a message needs.
	run, err := n.o.Store.GetRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	pl, planErr := n.o.Plans.PlanOf(ctx, run)
	if planErr == nil && !notifyMatches(pl.Spec.Notify, string(run.Status)) {
		return &notification{}, nil
	}
	tree, err := n.o.Store.GetRunTree(ctx, runID)
	if err != nil {
		return nil, err
	}
	run = tree.Run
	p, err := n.o.Store.GetPipeline(ctx, run.PipelineID)
	if err != nil {
		return nil, err
	}
	note := &notification{Message: notify.Message{
		DeliveryID: run.ID + ".notify",
		Pipeline:   notify.Pipeline{ID: p.ID, Name: p.Name},
		Run: notify.Run{ID: run.ID, Number: run.Number, Status: string(run.Status), Reason: run.Reason,
			TriggerType: run.TriggerType, TriggeredBy: run.TriggeredBy, Commit: run.Commit,
			Branch: run.TriggerContext().Branch, CreatedAt: run.CreatedAt, StartedAt: run.StartedAt, EndedAt: run.EndedAt},
	}}
	if n.o.RunLink != nil {
		note.Message.Run.URL = n.o.RunLink(run.ID)
	}
	for _, j := range tree.Jobs {
		note.Message.Jobs = append(note.Message.Jobs, notify.Job{Key: j.Key, Name: j.Name, Stage: j.Stage, Status: string(j.Status), Reason: j.Reason})
	}
	if planErr != nil {
		// A run whose definition never planned has no rules to act on.
		return note, nil
	}
	env := pl.Base
	needSecrets := false
	for _, r := range pl.Spec.Notify {
		if r.Webhook != nil && (strings.Contains(r.Webhook.URL, "secrets.") || strings.Contains(r.Webhook.Secret, "secrets.")) ||
			r.Slack != nil && strings.Contains(r.Slack.WebhookURL, "secrets.") {
			needSecrets = true
		}
	}
	var secretErr error
	if needSecrets && n.o.Secrets != nil {
		env.Secrets, secretErr = n.o.Secrets.ForPipeline(ctx, p.ID)
	}
	eval := func(what, src string) (string, string) {
		if !strings.Contains(src, "${{") {
			return src, ""
		}
		if secretErr != nil && strings.Contains(src, "secrets.") {
			return "", what + ": the pipeline's secrets cannot be read: " + secretErr.Error()
		}
		t, err := expr.ParseTemplate(src)
		if err != nil {
			return "", what + ": " + err.Error()
		}
		v, err := t.Eval(&env)
		if err != nil {
			return "", what + ": " + err.Error()
		}
		return v, ""
	}
	for i, r := range pl.Spec.Notify {
		if !notify.Matches(r.On, string(run.Status)) {
			continue
		}
		at := fmt.Sprintf("notify[%d]", i)
		if w := r.Webhook; w != nil {
			c := channel{Key: fmt.Sprintf("%d.webhook", i), Kind: "webhook"}
			var e1, e2 string
			c.URL, e1 = eval(at+".webhook.url", w.URL)
			c.Secret, e2 = eval(at+".webhook.secret", w.Secret)
			c.Err = strings.TrimSpace(e1 + " " + e2)
			note.Channels = append(note.Channels, c)
		}
		if sl := r.Slack; sl != nil {
			c := channel{Key: fmt.Sprintf("%d.slack", i), Kind: "slack", SlackChannel: sl.Channel}
			c.URL, c.Err = eval(at+".slack.webhookUrl", sl.WebhookURL)
			note.Channels = append(note.Channels, c)
		}
		if em := r.Email; em != nil {
			note.Channels = append(note.Channels, channel{Key: fmt.Sprintf("%d.email", i), Kind: "email",
				To: em.To, Subject: em.Subject})
		}
	}
	return note, nil
}

// notifyMatches reports whether any rule applies to a run ending in status.
func notifyMatches(rules []spec.NotifyRule, status string) bool {
	for _, r := range rules {
		if notify.Matches(r.On, status) {
			return true
		}
	}
	return false
}
