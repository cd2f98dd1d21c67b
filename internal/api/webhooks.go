package api

import (
	"mime"
	"net/http"

	"github.com/runnel-ci/runnel/internal/apikit"
	"github.com/runnel-ci/runnel/internal/trigger/webhook"
	"github.com/runnel-ci/runnel/internal/wire"
)

// Webhooks: POST /api/v1/webhooks/{provider}/{pipelineId} is public (the
// signature made with the pipeline's webhook secret is the authentication);
// POST /api/v1/pipelines/{pipelineId}/webhook/rotate and the write-only
// webhookSecret field of a pipeline set that secret.

// maxWebhookBody bounds a delivery: forges send up to a few MiB for large
// pushes (GitHub caps payloads at 25 MB, but drops the commit list first).
const maxWebhookBody = 5 << 20

// Opener opens sealed values (secret.Keyring implements it): the webhook
// service needs the pipelines' webhook secrets in clear, and Config.Secrets
// is asked for it.
type Opener = webhook.Opener

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

// receiveWebhook handles a forge's delivery: the webhook service verifies,
// de-duplicates, routes and triggers.
func (s *Server) receiveWebhook(w http.ResponseWriter, r *http.Request) error {
	provider := r.PathValue("provider")
	if err := webhook.CheckProvider(provider); err != nil {
		return err
	}
	pid, err := pathID(r, pipelineID)
	if err != nil {
		return err
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		// A forge's form-encoded deliveries (GitHub's other content type)
		// carry the JSON in a field: the hook must be set to send JSON.
		return apikit.Errorf(http.StatusUnsupportedMediaType, "header Content-Type: must be application/json, got %q: set the webhook's content type to application/json on the forge", r.Header.Get("Content-Type"))
	}
	body, err := apikit.ReadBody(r, maxWebhookBody)
	if err != nil {
		return err
	}
	o, err := s.webhooks.Receive(r.Context(), provider, pid, r.Header, body)
	if err != nil {
		return err
	}
	out := webhookJSON{Event: o.Event, DeliveryID: o.DeliveryID, Triggered: o.Triggered, Replayed: o.Replayed,
		Reason: o.Reason, Runs: make([]webhookRunJSON, 0, len(o.Runs))}
	for _, run := range o.Runs {
		out.Runs = append(out.Runs, webhookRunJSON{RunID: run.ID, Number: run.Number})
	}
	status := http.StatusOK
	if o.Started {
		status = http.StatusCreated
	}
	s.ok(w, status, out)
	return nil
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
	base := apikit.ExternalBase(r, s.externalURL)
	for _, prov := range webhook.Providers {
		urls[prov] = base + "/api/v1/webhooks/" + prov + "/" + id
	}
	s.ok(w, http.StatusOK, webhookSecretJSON{PipelineID: id, Secret: secret, URLs: urls, UpdatedAt: wire.Time(updated.UpdatedAt)})
	return nil
}
