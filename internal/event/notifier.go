package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/event/notify"
	"github.com/runnel-ci/runnel/internal/plan"
	"github.com/runnel-ci/runnel/internal/store"
)

// Event types of notification outcomes.
const (
	EventNotificationSent   = "notification.sent"
	EventNotificationFailed = "notification.failed"
)

// NotifierStore is what the notifier reads and writes: the finished run, its
// jobs and pipeline, its events (to skip channels already settled when a
// delivery is retried), and the outcomes it records on the run.
type NotifierStore interface {
	GetRun(ctx context.Context, id string) (*store.Run, error)
	GetRunTree(ctx context.Context, runID string) (*store.RunTree, error)
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	ListRunEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]*store.RunEvent, error)
	UpdateRunTx(ctx context.Context, runID string, fn func(store.RunTx) error) error
}

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// Store is the store decorated by Hinting, so that live streams hear of
	// the outcomes.
	Store NotifierStore
	// Plans gives a run's plan (the scheduler, which caches them): the
	// notify rules and the run-level contexts their templates read.
	Plans interface {
		PlanOf(ctx context.Context, run *store.Run) (*plan.Plan, error)
	}
	// Secrets opens a pipeline's secrets for templates that name them (nil:
	// none).
	Secrets interface {
		ForPipeline(ctx context.Context, pipelineID string) (map[string]string, error)
	}
	// RunLink, when set, gives a run's URL for messages.
	RunLink func(runID string) string
	// Now is the clock of timeline entries (nil: time.Now).
	Now func() time.Time
	// HTTP sends webhooks and Slack messages (nil: a client with a 30s
	// timeout).
	HTTP *http.Client
	// Mailer sends email; nil: email channels fail with a clear reason.
	Mailer *notify.Mailer
	// MaxAttempts bounds the attempts of a failing channel (default 5):
	// then its failure is recorded and it is not tried again.
	MaxAttempts int
	Logger      *slog.Logger
}

// Notifier sends a finished run's notifications (the outbox's
// store.NotifySink entries). Each channel's outcome is recorded on the run
// as an event (notification.sent, notification.failed) and a failure also in
// the run's timeline; a failure never changes the run's status. A channel
// that fails is retried with the outbox's backoff, up to MaxAttempts; the
// channels already settled are not sent again.
type Notifier struct {
	o   NotifierOptions
	log *slog.Logger
}

// NewNotifier returns a Notifier.
func NewNotifier(o NotifierOptions) *Notifier {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: notify.DefaultSMTPTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := &Notifier{o: o, log: o.Logger}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	return n
}

// notificationRecord is the data of a notification.sent or .failed event.
type notificationRecord struct {
	Key      string `json:"key"`
	Channel  string `json:"channel"`
	Target   string `json:"target"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
}

// Notify implements Notifier for the Deliverer.
func (n *Notifier) Notify(ctx context.Context, e *store.RunEvent, attempt int) error {
	note, err := n.notification(ctx, e.RunID)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil // the run was deleted
	}
	if err != nil {
		return err
	}
	if len(note.Channels) == 0 {
		return nil
	}
	settled, err := n.settled(ctx, e.RunID)
	if err != nil {
		return err
	}
	var pending []string
	for _, ch := range note.Channels {
		if settled[ch.Key] {
			continue
		}
		rec := notificationRecord{Key: ch.Key, Channel: ch.Kind, Target: target(ch), Attempts: attempt}
		var sendErr error
		if ch.Err != "" {
			sendErr = errors.New(ch.Err)
		} else {
			sendErr = n.send(ctx, ch, note.Message)
		}
		if sendErr == nil {
			if err := n.record(ctx, e.RunID, EventNotificationSent, rec, ""); err != nil {
				return err
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ch.Err == "" && !errors.Is(sendErr, errNotConfigured) && attempt < n.o.MaxAttempts {
			n.log.Warn("notification failed; will retry", "run_id", e.RunID, "channel", ch.Key, "target", rec.Target,
				"attempt", attempt, "err", sendErr)
			pending = append(pending, ch.Key+": "+sendErr.Error())
			continue
		}
		rec.Error = sendErr.Error()
		reason := fmt.Sprintf("%s %s to %s failed after %d attempt(s): %s", ch.Kind, ch.Key, rec.Target, attempt, sendErr)
		n.log.Warn("notification failed", "run_id", e.RunID, "channel", ch.Key, "target", rec.Target, "attempts", attempt, "err", sendErr)
		if err := n.record(ctx, e.RunID, EventNotificationFailed, rec, reason); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		return errors.New(strings.Join(pending, "; "))
	}
	return nil
}

var errNotConfigured = errors.New("no SMTP server is configured (--smtp-addr)")

func (n *Notifier) send(ctx context.Context, ch channel, m notify.Message) error {
	switch ch.Kind {
	case "webhook":
		return notify.Webhook(ctx, n.o.HTTP, ch.URL, ch.Secret, m)
	case "slack":
		return notify.Slack(ctx, n.o.HTTP, ch.URL, ch.SlackChannel, m)
	case "email":
		if n.o.Mailer == nil {
			return errNotConfigured
		}
		return n.o.Mailer.Send(ctx, ch.To, ch.Subject, m)
	}
	return fmt.Errorf("unknown channel %q", ch.Kind)
}

func (n *Notifier) record(ctx context.Context, runID, typ string, rec notificationRecord, reason string) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	// An event with the outcome and, for a failure, a timeline entry with
	// the reason.
	return n.o.Store.UpdateRunTx(ctx, runID, func(tx store.RunTx) error {
		if _, err := tx.AddEvent(typ, b); err != nil {
			return err
		}
		if typ == EventNotificationFailed {
			return tx.AppendTimeline(&store.TimelineEntry{RunID: runID, Time: n.o.Now().UTC(), Action: "notification_failed",
				Operator: "runnel", Reason: reason})
		}
		return nil
	})
}

// settled lists the channel keys whose outcome is already recorded.
func (n *Notifier) settled(ctx context.Context, runID string) (map[string]bool, error) {
	out := map[string]bool{}
	var after int64
	for {
		es, err := n.o.Store.ListRunEvents(ctx, runID, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			after = e.Seq
			if e.Type != EventNotificationSent && e.Type != EventNotificationFailed {
				continue
			}
			var rec notificationRecord
			if json.Unmarshal(e.Data, &rec) == nil {
				out[rec.Key] = true
			}
		}
		if len(es) < 1000 {
			return out, nil
		}
	}
}

// target names where a channel goes without its secret parts: a webhook's
// host, Slack's host (its path is the secret), the email recipients.
func target(ch channel) string {
	switch ch.Kind {
	case "email":
		return strings.Join(ch.To, ", ")
	case "slack":
		if u, err := url.Parse(ch.URL); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host + "/…"
		}
	case "webhook":
		if u, err := url.Parse(ch.URL); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host + u.EscapedPath()
		}
	}
	return "(an invalid URL)"
}
