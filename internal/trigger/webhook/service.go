package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/gitdef"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
)

// Store is what the webhook service reads and writes.
type Store interface {
	GetPipeline(ctx context.Context, id string) (*store.Pipeline, error)
	GetWebhookSecret(ctx context.Context, pipelineID string) (*store.PipelineWebhook, error)
	GetSpec(ctx context.Context, pipelineID string, version int) (*store.SpecVersion, error)
	GetRun(ctx context.Context, id string) (*store.Run, error)
	GetDelivery(ctx context.Context, pipelineID, provider, deliveryID string) (*store.WebhookDelivery, error)
	RecordDelivery(ctx context.Context, d *store.WebhookDelivery) (*store.WebhookDelivery, bool, error)
}

// Opener opens sealed values (secret.Keyring implements it): the secret
// that signs deliveries is needed in clear.
type Opener interface {
	Open(secretID string, ciphertext []byte, keyID string) ([]byte, error)
}

// Runs starts runs (the scheduler).
type Runs interface {
	Trigger(ctx context.Context, pipelineID string, req runnel.TriggerRequest) (*store.Run, bool, error)
}

// ImageBuilds routes a delivery to an image repository's pipeline (the
// image build service): managed is false when the pipeline is not one.
type ImageBuilds interface {
	RouteDelivery(ctx context.Context, pipelineID string, ev *Event, provider, deliveryID string) (runs []Run, reason string, managed bool, err error)
}

// Options configure a Service. Store and Runs are required.
type Options struct {
	Store Store
	Runs  Runs
	// Opener opens webhook secrets; nil: deliveries are refused
	// (ErrUnavailable).
	Opener Opener
	// Images routes deliveries of image repositories' pipelines; nil: none.
	Images ImageBuilds
	// Git finds the definition a delivery's run would use (the file at the
	// event's commit, the configuration extension); nil: the stored head's.
	Git *gitdef.Source
	// Catalog resolves `uses` when definitions are parsed (nil: built-ins).
	Catalog spec.ActionCatalog
	Clock   func() time.Time
	Logger  *slog.Logger
}

// Service handles forge deliveries: verify the signature with the
// pipeline's secret, parse, answer a delivery already handled as it was,
// route image repositories' pushes to their builds, match the definition's
// event triggers and start one run. Every delivery is recorded with its
// outcome.
type Service struct {
	o   Options
	log *slog.Logger
}

// NewService returns a Service.
func NewService(o Options) *Service {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	s := &Service{o: o, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Run is a run a delivery started (or found again).
type Run struct {
	ID     string
	Number int64
}

// Outcome is what became of a delivery.
type Outcome struct {
	// Event is the kind Runnel saw: push, tag, pull_request, ping, ignored.
	Event      string
	DeliveryID string
	Triggered  bool
	// Replayed: the delivery had been received; no new run.
	Replayed bool
	Reason   string
	Runs     []Run
	// Started: this delivery started new runs (not a replay).
	Started bool
}

// CheckProvider accepts a provider of Providers (ErrNotFound otherwise: it
// is the last segment of the webhook URL's path).
func CheckProvider(provider string) error {
	if !KnownProvider(provider) {
		return runnel.Errorf(runnel.ErrNotFound, "webhook provider %q is unknown; accepted: %s", provider, strings.Join(Providers, ", "))
	}
	return nil
}

// Receive handles a delivery from provider to pipeline pipelineID's webhook
// URL.
func (s *Service) Receive(ctx context.Context, provider, pipelineID string, header http.Header, body []byte) (*Outcome, error) {
	if err := CheckProvider(provider); err != nil {
		return nil, err
	}
	secret, err := s.openSecret(ctx, pipelineID)
	if err != nil {
		return nil, err
	}
	if err := Verify(provider, header, body, secret); err != nil {
		return nil, runnel.Errorf(runnel.ErrUnauthenticated, "%v", err)
	}
	ev, err := Parse(provider, header, body)
	if err != nil {
		return nil, runnel.Invalidf("body: %v", err)
	}
	deliveryID := boundedDeliveryID(ev.DeliveryID)
	if ev.Kind == KindPing {
		return &Outcome{Event: KindPing, DeliveryID: deliveryID, Runs: []Run{}}, nil
	}

	// A delivery already handled answers as it did then.
	prev, err := s.o.Store.GetDelivery(ctx, pipelineID, provider, deliveryID)
	switch {
	case err == nil:
		return s.recorded(ctx, ev.Kind, prev, true), nil
	case !errors.Is(err, runnel.ErrNotFound):
		return nil, fmt.Errorf("webhook %s/%s: %w", provider, deliveryID, err)
	}

	record := func(d *store.WebhookDelivery) (*store.WebhookDelivery, bool, error) {
		d.PipelineID, d.Provider, d.DeliveryID, d.CreatedAt = pipelineID, provider, deliveryID, s.o.Clock().UTC()
		stored, replayed, err := s.o.Store.RecordDelivery(ctx, d)
		if err != nil {
			return nil, false, fmt.Errorf("record webhook delivery %s/%s: %w", provider, deliveryID, err)
		}
		return stored, replayed, nil
	}
	ignore := func(reason string) (*Outcome, error) {
		stored, replayed, err := record(&store.WebhookDelivery{Status: "ignored", Reason: reason})
		if err != nil {
			return nil, err
		}
		return s.recorded(ctx, ev.Kind, stored, replayed), nil
	}
	if p, err := s.o.Store.GetPipeline(ctx, pipelineID); err == nil && (p.Deactivated || p.WebhookDisabled) {
		if p.Deactivated {
			return ignore("the pipeline is deactivated: webhook deliveries start no runs until it is activated again")
		}
		return ignore("the pipeline's triggerWebhook is off: webhook deliveries start no runs")
	}
	switch {
	case ev.Kind == KindIgnored:
		return ignore(ev.Reason)
	case ev.Deleted && ev.Trigger.Tag != "":
		return ignore(fmt.Sprintf("tag %q was deleted: nothing to build", ev.Trigger.Tag))
	case ev.Deleted:
		return ignore(fmt.Sprintf("branch %q was deleted: nothing to build", ev.Trigger.Branch))
	}
	if s.o.Images != nil {
		// An image repository's pipeline builds its matching tag configs.
		runs, reason, managed, err := s.o.Images.RouteDelivery(ctx, pipelineID, ev, provider, deliveryID)
		if err != nil {
			return nil, fmt.Errorf("image builds for %s delivery %s: %w", provider, deliveryID, err)
		}
		if managed {
			if len(runs) == 0 {
				return ignore(reason)
			}
			d := &store.WebhookDelivery{Status: "triggered"}
			for _, r := range runs {
				d.RunIDs = append(d.RunIDs, r.ID)
			}
			if _, _, err := record(d); err != nil {
				return nil, err
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "webhook started image builds", slog.String("pipeline_id", pipelineID),
				slog.String("provider", provider), slog.String("delivery_id", deliveryID), slog.Int("builds", len(runs)))
			return &Outcome{Event: ev.Kind, DeliveryID: deliveryID, Triggered: true, Runs: runs, Started: true}, nil
		}
	}
	triggers, reason, err := s.eventTriggers(ctx, pipelineID, ev.Trigger)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return ignore(reason)
	}
	matched, reason := Match(triggers, ev)
	if matched == nil {
		return ignore("no trigger matches: " + reason)
	}

	tc := ev.Trigger
	run, replayed, err := s.o.Runs.Trigger(ctx, pipelineID, runnel.TriggerRequest{
		Variables:   matched.Variables,
		TriggeredBy: "webhook:" + provider,
		// Derived from the delivery: replicas receiving the same delivery
		// at once start one run.
		RequestID:   "webhook:" + provider + ":" + deliveryID,
		TriggerType: runnel.TriggerEvent,
		Trigger:     &tc,
	})
	if err != nil {
		return nil, fmt.Errorf("trigger pipeline %s from %s delivery %s: %w", pipelineID, provider, deliveryID, err)
	}
	// A concurrent copy of this delivery may have recorded it first: the run
	// is the same (same request id), and whether this answer created it is
	// the scheduler's to say.
	if _, _, err := record(&store.WebhookDelivery{Status: "triggered", RunIDs: []string{run.ID}}); err != nil {
		return nil, err
	}
	if !replayed {
		s.log.LogAttrs(ctx, slog.LevelInfo, "webhook started a run", slog.String("pipeline_id", pipelineID),
			slog.String("provider", provider), slog.String("delivery_id", deliveryID), slog.String("run_id", run.ID),
			slog.String("event", ev.Kind))
	}
	return &Outcome{Event: ev.Kind, DeliveryID: deliveryID, Triggered: true, Replayed: replayed,
		Runs: []Run{{ID: run.ID, Number: run.Number}}, Started: !replayed}, nil
}

// boundedDeliveryID keeps ids of a sane length in the store and in request
// ids: a longer one is replaced by its digest.
func boundedDeliveryID(id string) string {
	if len(id) <= 128 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// openSecret returns the pipeline's webhook secret in clear: ErrNotFound
// for an unknown pipeline, ErrUnauthenticated when it has no secret,
// ErrUnavailable without a key.
func (s *Service) openSecret(ctx context.Context, pipelineID string) (string, error) {
	if _, err := s.o.Store.GetPipeline(ctx, pipelineID); errors.Is(err, runnel.ErrNotFound) {
		return "", runnel.Errorf(runnel.ErrNotFound, "pipeline %s not found", pipelineID)
	} else if err != nil {
		return "", fmt.Errorf("get pipeline %s: %w", pipelineID, err)
	}
	hook, err := s.o.Store.GetWebhookSecret(ctx, pipelineID)
	if errors.Is(err, runnel.ErrNotFound) {
		return "", runnel.Errorf(runnel.ErrUnauthenticated, "pipeline %s has no webhook secret: set one with POST /api/v1/pipelines/%s/webhook/rotate (or webhookSecret on the pipeline) and give it to the forge", pipelineID, pipelineID)
	}
	if err != nil {
		return "", fmt.Errorf("get webhook secret of pipeline %s: %w", pipelineID, err)
	}
	if s.o.Opener == nil {
		return "", runnel.Errorf(runnel.ErrUnavailable, "webhooks are not available: this server has no secret key configured")
	}
	v, err := s.o.Opener.Open(hook.SealID(), hook.Ciphertext, hook.KeyID)
	if err != nil {
		return "", fmt.Errorf("open webhook secret of pipeline %s: %w", pipelineID, err)
	}
	return string(v), nil
}

// eventTriggers returns the triggers a delivery is matched against: those of
// the definition the run would use — the pipeline file at the event's commit
// for a Git-backed pipeline, the configuration extension's answer — else the
// stored head's. A definition that cannot be read or is not valid matches,
// so that the run the scheduler starts fails with the reason in the history
// instead of the delivery vanishing.
func (s *Service) eventTriggers(ctx context.Context, pipelineID string, t runnel.Trigger) ([]spec.Trigger, string, error) {
	if s.o.Git == nil {
		return s.headTriggers(ctx, pipelineID)
	}
	p, err := s.o.Store.GetPipeline(ctx, pipelineID)
	if err != nil {
		return nil, "", err
	}
	if p.RepoURL == "" && s.o.Git.Extension == nil {
		return s.headTriggers(ctx, pipelineID)
	}
	t.Type = runnel.TriggerEvent
	rd, err := s.o.Git.Definition(ctx, p, t, nil)
	if err != nil {
		return nil, "", nil // no filter: the run fails with the reason
	}
	if rd == nil {
		return s.headTriggers(ctx, pipelineID)
	}
	def, err := spec.Parse(rd.Content, spec.Options{File: rd.File, Catalog: s.o.Catalog})
	if err != nil {
		return nil, "", nil // no filter: the run fails with the reason
	}
	return def.Triggers, "", nil
}

// headTriggers returns the triggers of the pipeline's head definition, or a
// reason not to start a run (no definition, an invalid one).
func (s *Service) headTriggers(ctx context.Context, pipelineID string) ([]spec.Trigger, string, error) {
	sv, err := s.o.Store.GetSpec(ctx, pipelineID, 0)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, fmt.Sprintf("pipeline %s has no definition yet: save one with POST /api/v1/pipelines/%s/spec/save", pipelineID, pipelineID), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get the head spec of pipeline %s: %w", pipelineID, err)
	}
	def, err := spec.Parse(sv.Spec, spec.Options{File: "spec", Catalog: s.o.Catalog})
	if err != nil {
		return nil, fmt.Sprintf("the pipeline's definition (version %d) is not valid: %v", sv.Version, err), nil
	}
	return def.Triggers, "", nil
}

// recorded describes a recorded delivery, with its runs' numbers.
func (s *Service) recorded(ctx context.Context, kind string, d *store.WebhookDelivery, replayed bool) *Outcome {
	out := &Outcome{Event: kind, DeliveryID: d.DeliveryID, Triggered: d.Status == "triggered", Replayed: replayed,
		Reason: d.Reason, Runs: []Run{}}
	for _, id := range d.RunIDs {
		run, err := s.o.Store.GetRun(ctx, id)
		if err != nil {
			// The run is gone (or unreadable): its id is still the answer.
			out.Runs = append(out.Runs, Run{ID: id})
			continue
		}
		out.Runs = append(out.Runs, Run{ID: run.ID, Number: run.Number})
	}
	return out
}
