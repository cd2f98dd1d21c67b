package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/runnel-ci/runnel"
	"github.com/runnel-ci/runnel/internal/imagebuild"
	"github.com/runnel-ci/runnel/internal/spec"
	"github.com/runnel-ci/runnel/internal/store"
	"github.com/runnel-ci/runnel/internal/trigger/webhook"
)

// Webhooks: POST /api/v1/webhooks/{provider}/{pipelineId} is public (the
// signature made with the pipeline's webhook secret is the authentication);
// POST /api/v1/pipelines/{pipelineId}/webhook/rotate and the write-only
// webhookSecret field of a pipeline set that secret.

// maxWebhookBody bounds a delivery: forges send up to a few MiB for large
// pushes (GitHub caps payloads at 25 MB, but drops the commit list first).
const maxWebhookBody = 5 << 20

// Opener opens sealed values (secret.Keyring implements it). The webhook
// receiver needs the secret in clear to check signatures; Config.Secrets is
// asked for it.
type Opener interface {
	Open(secretID string, ciphertext []byte, keyID string) ([]byte, error)
}

// webhookJSON is the answer to a delivery.
type webhookJSON struct {
	// Event is the kind Runnel saw: push, tag, pull_request, ping, ignored.
	Event      string `json:"event"`
	DeliveryID string `json:"deliveryId,omitempty"`
	Triggered  bool   `json:"triggered"`
	// Replayed: the delivery had been received; no new run.
	Replayed bool             `json:"replayed"`
	Reason   string           `json:"reason,omitempty"`
	Runs     []webhookRunJSON `json:"runs"`
}

type webhookRunJSON struct {
	RunID  string `json:"runId"`
	Number int64  `json:"number"`
}

// webhookSecretJSON is the answer to a rotation: the only time the secret is
// shown.
type webhookSecretJSON struct {
	PipelineID string            `json:"pipelineId"`
	Secret     string            `json:"secret"`
	URLs       map[string]string `json:"urls"`
	UpdatedAt  string            `json:"updatedAt"`
}

// receiveWebhook handles a forge's delivery.
func (s *Server) receiveWebhook(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	provider := r.PathValue("provider")
	if !webhook.KnownProvider(provider) {
		return errorf(http.StatusNotFound, "webhook provider %q is unknown; accepted: %s", provider, strings.Join(webhook.Providers, ", "))
	}
	pid, err := pathID(r, pipelineID)
	if err != nil {
		return err
	}
	body, err := readBody(r, maxWebhookBody)
	if err != nil {
		return err
	}
	secret, err := s.openWebhookSecret(ctx, pid)
	if err != nil {
		return err
	}
	if err := webhook.Verify(provider, r.Header, body, secret); err != nil {
		return &apiError{status: http.StatusUnauthorized, msg: err.Error()}
	}
	ev, err := webhook.Parse(provider, r.Header, body)
	if err != nil {
		return errorf(http.StatusBadRequest, "body: %v", err)
	}
	deliveryID := boundedDeliveryID(ev.DeliveryID)
	if ev.Kind == webhook.KindPing {
		s.ok(w, http.StatusOK, webhookJSON{Event: webhook.KindPing, DeliveryID: deliveryID, Runs: []webhookRunJSON{}})
		return nil
	}

	// A delivery already handled answers as it did then.
	prev, err := s.st.GetDelivery(ctx, pid, provider, deliveryID)
	switch {
	case err == nil:
		s.ok(w, http.StatusOK, s.deliveryJSON(ctx, ev.Kind, prev, true))
		return nil
	case !errors.Is(err, runnel.ErrNotFound):
		return fmt.Errorf("webhook %s/%s: %w", provider, deliveryID, err)
	}

	ignore := func(reason string) error {
		d := &store.WebhookDelivery{PipelineID: pid, Provider: provider, DeliveryID: deliveryID, Status: "ignored",
			Reason: reason, CreatedAt: s.now().UTC()}
		stored, replayed, err := s.st.RecordDelivery(ctx, d)
		if err != nil {
			return fmt.Errorf("record webhook delivery %s/%s: %w", provider, deliveryID, err)
		}
		s.ok(w, http.StatusOK, s.deliveryJSON(ctx, ev.Kind, stored, replayed))
		return nil
	}
	switch {
	case ev.Kind == webhook.KindIgnored:
		return ignore(ev.Reason)
	case ev.Deleted && ev.Trigger.Tag != "":
		return ignore(fmt.Sprintf("tag %q was deleted: nothing to build", ev.Trigger.Tag))
	case ev.Deleted:
		return ignore(fmt.Sprintf("branch %q was deleted: nothing to build", ev.Trigger.Branch))
	}
	if s.images != nil {
		// An image repository's pipeline builds its matching tag configs.
		res, managed, err := s.images.Push(ctx, pid, ev, provider, deliveryID)
		if err != nil {
			return fmt.Errorf("image builds for %s delivery %s: %w", provider, deliveryID, err)
		}
		if managed {
			return s.imagePush(w, r, pid, provider, deliveryID, ev.Kind, res, ignore)
		}
	}
	triggers, reason, err := s.eventTriggers(ctx, pid, ev.Trigger)
	if err != nil {
		return err
	}
	if reason != "" {
		return ignore(reason)
	}
	matched, reason := webhook.Match(triggers, ev)
	if matched == nil {
		return ignore("no trigger matches: " + reason)
	}

	tc := ev.Trigger
	run, replayed, err := s.runs.Trigger(ctx, pid, runnel.TriggerRequest{
		Variables:   matched.Variables,
		TriggeredBy: "webhook:" + provider,
		// Derived from the delivery: replicas receiving the same delivery
		// at once start one run.
		RequestID:   "webhook:" + provider + ":" + deliveryID,
		TriggerType: runnel.TriggerEvent,
		Trigger:     &tc,
	})
	if err != nil {
		return fmt.Errorf("trigger pipeline %s from %s delivery %s: %w", pid, provider, deliveryID, err)
	}
	d := &store.WebhookDelivery{PipelineID: pid, Provider: provider, DeliveryID: deliveryID, Status: "triggered",
		RunIDs: []string{run.ID}, CreatedAt: s.now().UTC()}
	// A concurrent copy of this delivery may have recorded it first: the run
	// is the same (same request id), and whether this answer created it is
	// the scheduler's to say.
	if _, _, err := s.st.RecordDelivery(ctx, d); err != nil {
		return fmt.Errorf("record webhook delivery %s/%s: %w", provider, deliveryID, err)
	}
	out := webhookJSON{Event: ev.Kind, DeliveryID: deliveryID, Triggered: true, Replayed: replayed,
		Runs: []webhookRunJSON{{RunID: run.ID, Number: run.Number}}}
	status := http.StatusCreated
	if out.Replayed {
		status = http.StatusOK
	} else {
		s.log.LogAttrs(ctx, slog.LevelInfo, "webhook started a run", slog.String("pipeline_id", pid),
			slog.String("provider", provider), slog.String("delivery_id", deliveryID), slog.String("run_id", run.ID),
			slog.String("event", ev.Kind))
	}
	s.ok(w, status, out)
	return nil
}

// imagePush answers a delivery to an image repository's pipeline.
func (s *Server) imagePush(w http.ResponseWriter, r *http.Request, pid, provider, deliveryID, kind string,
	res *imagebuild.PushResult, ignore func(string) error) error {
	if len(res.Builds) == 0 {
		return ignore(res.Reason)
	}
	d := &store.WebhookDelivery{PipelineID: pid, Provider: provider, DeliveryID: deliveryID, Status: "triggered",
		CreatedAt: s.now().UTC()}
	out := webhookJSON{Event: kind, DeliveryID: deliveryID, Triggered: true, Runs: []webhookRunJSON{}}
	for _, b := range res.Builds {
		d.RunIDs = append(d.RunIDs, b.ID)
		out.Runs = append(out.Runs, webhookRunJSON{RunID: b.ID, Number: b.RunNumber})
	}
	if _, _, err := s.st.RecordDelivery(r.Context(), d); err != nil {
		return fmt.Errorf("record webhook delivery %s/%s: %w", provider, deliveryID, err)
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "webhook started image builds", slog.String("pipeline_id", pid),
		slog.String("provider", provider), slog.String("delivery_id", deliveryID), slog.Int("builds", len(res.Builds)))
	s.ok(w, http.StatusCreated, out)
	return nil
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

// openWebhookSecret returns the pipeline's webhook secret in clear: 404 for an
// unknown pipeline, 401 when it has no secret, 503 without a key.
func (s *Server) openWebhookSecret(ctx context.Context, pid string) (string, error) {
	if _, err := s.st.GetPipeline(ctx, pid); errors.Is(err, runnel.ErrNotFound) {
		return "", errorf(http.StatusNotFound, "pipeline %s not found", pid)
	} else if err != nil {
		return "", fmt.Errorf("get pipeline %s: %w", pid, err)
	}
	hook, err := s.st.GetWebhookSecret(ctx, pid)
	if errors.Is(err, runnel.ErrNotFound) {
		return "", errorf(http.StatusUnauthorized, "pipeline %s has no webhook secret: set one with POST /api/v1/pipelines/%s/webhook/rotate (or webhookSecret on the pipeline) and give it to the forge", pid, pid)
	}
	if err != nil {
		return "", fmt.Errorf("get webhook secret of pipeline %s: %w", pid, err)
	}
	op, ok := s.seal.(Opener)
	if !ok {
		return "", errorf(http.StatusServiceUnavailable, "webhooks are not available: this server has no secret key configured")
	}
	v, err := op.Open(hook.SealID(), hook.Ciphertext, hook.KeyID)
	if err != nil {
		return "", fmt.Errorf("open webhook secret of pipeline %s: %w", pid, err)
	}
	return string(v), nil
}

// eventTriggers returns the triggers a delivery is matched against: those of
// the definition the run would use — the pipeline file at the event's commit
// for a Git-backed pipeline, the configuration extension's answer — else the
// stored head's. A definition that cannot be read or is not valid matches,
// so that the run the scheduler starts fails with the reason in the history
// instead of the delivery vanishing.
func (s *Server) eventTriggers(ctx context.Context, pid string, t runnel.Trigger) ([]spec.Trigger, string, error) {
	if s.git == nil {
		return s.headTriggers(ctx, pid)
	}
	p, err := s.st.GetPipeline(ctx, pid)
	if err != nil {
		return nil, "", err
	}
	if !s.pipelines.GitBacked(p) && s.git.Extension == nil {
		return s.headTriggers(ctx, pid)
	}
	t.Type = runnel.TriggerEvent
	rd, err := s.git.Definition(ctx, p, t, nil)
	if err != nil {
		return nil, "", nil // no filter: the run fails with the reason
	}
	if rd == nil {
		return s.headTriggers(ctx, pid)
	}
	def, err := spec.Parse(rd.Content, spec.Options{File: rd.File, Catalog: s.catalog})
	if err != nil {
		return nil, "", nil // no filter: the run fails with the reason
	}
	return def.Triggers, "", nil
}

// headTriggers returns the triggers of the pipeline's head definition, or a
// reason not to start a run (no definition, an invalid one).
func (s *Server) headTriggers(ctx context.Context, pid string) ([]spec.Trigger, string, error) {
	sv, err := s.st.GetSpec(ctx, pid, 0)
	if errors.Is(err, runnel.ErrNotFound) {
		return nil, fmt.Sprintf("pipeline %s has no definition yet: save one with POST /api/v1/pipelines/%s/spec/save", pid, pid), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get the head spec of pipeline %s: %w", pid, err)
	}
	def, err := spec.Parse(sv.Spec, spec.Options{File: "spec", Catalog: s.catalog})
	if err != nil {
		return nil, fmt.Sprintf("the pipeline's definition (version %d) is not valid: %v", sv.Version, err), nil
	}
	return def.Triggers, "", nil
}

// deliveryJSON describes a recorded delivery, with its runs' numbers.
func (s *Server) deliveryJSON(ctx context.Context, kind string, d *store.WebhookDelivery, replayed bool) webhookJSON {
	out := webhookJSON{Event: kind, DeliveryID: d.DeliveryID, Triggered: d.Status == "triggered", Replayed: replayed,
		Reason: d.Reason, Runs: []webhookRunJSON{}}
	for _, id := range d.RunIDs {
		run, err := s.st.GetRun(ctx, id)
		if err != nil {
			// The run is gone (or unreadable): its id is still the answer.
			out.Runs = append(out.Runs, webhookRunJSON{RunID: id})
			continue
		}
		out.Runs = append(out.Runs, webhookRunJSON{RunID: run.ID, Number: run.Number})
	}
	return out
}

// rotateWebhookSecret generates a new secret for the pipeline, stores it
// sealed and shows it once, with the URLs to give each forge.
func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.sealer(); err != nil {
		return err
	}
	id, err := pathID(r, pipelineID)
	if err != nil {
		return err
	}
	secret, updated, err := s.pipelines.RotateWebhookSecret(r.Context(), id)
	if err != nil {
		return err
	}
	urls := map[string]string{}
	base := s.externalBase(r)
	for _, prov := range webhook.Providers {
		urls[prov] = base + "/api/v1/webhooks/" + prov + "/" + id
	}
	s.ok(w, http.StatusOK, webhookSecretJSON{PipelineID: id, Secret: secret, URLs: urls, UpdatedAt: isoTime(updated.UpdatedAt)})
	return nil
}

// externalBase is the server's URL as forges reach it: Config.ExternalURL,
// else the request's scheme (X-Forwarded-Proto behind a proxy) and Host.
func (s *Server) externalBase(r *http.Request) string {
	if s.externalURL != "" {
		return strings.TrimRight(s.externalURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}
