package scheduler

import (
	"context"
	"fmt"
	"strings"

	"github.com/runnel-ci/runnel/internal/event/notify"
	"github.com/runnel-ci/runnel/internal/expr"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// Notification is what a finished run's notify rules ask for: the message
// and the channels of every rule whose `on` covers the run's status.
type Notification struct {
	Message  notify.Message
	Channels []NotifyChannel
}

// NotifyChannel is one channel of one rule, with its templates evaluated.
type NotifyChannel struct {
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

// Notification evaluates the notify rules of a finished run (its own
// definition, with the run-level contexts and the pipeline's secrets).
func (s *Scheduler) Notification(ctx context.Context, runID string) (*Notification, error) {
	// Most definitions have no notify rules: find that out before reading
	// what a message needs.
	run, err := s.st.GetRun(ctx, runID)
	if err != nil {
		return nil, err
	}
	pl, planErr := s.planOf(ctx, run)
	if planErr == nil && !notifyMatches(pl.Spec.Notify, string(run.Status)) {
		return &Notification{}, nil
	}
	tree, err := s.st.GetRunTree(ctx, runID)
	if err != nil {
		return nil, err
	}
	run = tree.Run
	p, err := s.st.GetPipeline(ctx, run.PipelineID)
	if err != nil {
		return nil, err
	}
	n := &Notification{Message: notify.Message{
		DeliveryID: run.ID + ".notify",
		Pipeline:   notify.Pipeline{ID: p.ID, Name: p.Name},
		Run: notify.Run{ID: run.ID, Number: run.Number, Status: string(run.Status), Reason: run.Reason,
			TriggerType: run.TriggerType, TriggeredBy: run.TriggeredBy, Commit: run.Commit,
			Branch: triggerCtx(run).Branch, CreatedAt: run.CreatedAt, StartedAt: run.StartedAt, EndedAt: run.EndedAt},
	}}
	if s.runLink != nil {
		n.Message.Run.URL = s.runLink(run.ID)
	}
	for _, j := range tree.Jobs {
		n.Message.Jobs = append(n.Message.Jobs, notify.Job{Key: j.Key, Name: j.Name, Stage: j.Stage, Status: string(j.Status), Reason: j.Reason})
	}
	if planErr != nil {
		// A run whose definition never planned has no rules to act on.
		return n, nil
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
	if needSecrets && s.secrets != nil {
		env.Secrets, secretErr = s.secrets.ForPipeline(ctx, p.ID)
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
			c := NotifyChannel{Key: fmt.Sprintf("%d.webhook", i), Kind: "webhook"}
			var e1, e2 string
			c.URL, e1 = eval(at+".webhook.url", w.URL)
			c.Secret, e2 = eval(at+".webhook.secret", w.Secret)
			c.Err = strings.TrimSpace(e1 + " " + e2)
			n.Channels = append(n.Channels, c)
		}
		if sl := r.Slack; sl != nil {
			c := NotifyChannel{Key: fmt.Sprintf("%d.slack", i), Kind: "slack", SlackChannel: sl.Channel}
			c.URL, c.Err = eval(at+".slack.webhookUrl", sl.WebhookURL)
			n.Channels = append(n.Channels, c)
		}
		if em := r.Email; em != nil {
			n.Channels = append(n.Channels, NotifyChannel{Key: fmt.Sprintf("%d.email", i), Kind: "email",
				To: em.To, Subject: em.Subject})
		}
	}
	return n, nil
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

// RecordNotification adds a notification's outcome to the run: an event
// (typ notification.sent or notification.failed, data as given) and, for a
// failure, a timeline entry with the reason.
func (s *Scheduler) RecordNotification(ctx context.Context, runID, typ string, data []byte, reason string) error {
	return s.st.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		if _, err := tx.AddEvent(typ, data); err != nil {
			return err
		}
		if typ == EventNotificationFailed {
			return tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: s.now().UTC(), Action: "notification_failed",
				Operator: "runnel", Reason: reason})
		}
		return nil
	})
}

// Event types of notification outcomes.
const (
	EventNotificationSent   = "notification.sent"
	EventNotificationFailed = "notification.failed"
)
