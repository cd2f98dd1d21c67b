package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-ci/runnel/internal/store"
)

const webhookCols = `pipeline_id, secret_ciphertext, key_id, created_at, updated_at`

func scanWebhook(sc scanner) (*store.PipelineWebhook, error) {
	var (
		w                store.PipelineWebhook
		created, updated int64
	)
	if err := sc.Scan(&w.PipelineID, &w.Ciphertext, &w.KeyID, &created, &updated); err != nil {
		return nil, err
	}
	w.CreatedAt, w.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &w, nil
}

// SetWebhookSecret upserts the pipeline's sealed webhook secret in one
// statement, keeping created_at.
func (s *Store) SetWebhookSecret(ctx context.Context, w *store.PipelineWebhook) error {
	op := "set webhook secret"
	switch {
	case w == nil || w.PipelineID == "":
		return invalid(op, "the pipeline id must not be empty")
	case len(w.Ciphertext) == 0 || w.KeyID == "":
		return invalid(op, "the ciphertext and its key id must not be empty")
	}
	op += " of pipeline " + w.PipelineID
	now := s.nowUTC()
	err := s.writeTx(ctx, true, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO pipeline_webhooks (`+webhookCols+`) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (pipeline_id) DO UPDATE
			SET secret_ciphertext = excluded.secret_ciphertext, key_id = excluded.key_id, updated_at = excluded.updated_at`,
			w.PipelineID, w.Ciphertext, w.KeyID, micros(orNow(w.CreatedAt, now)), micros(orNow(w.UpdatedAt, now)))
		return err
	})
	if s.d.isForeignKey(err) {
		return fmt.Errorf("%s: no such pipeline: %w", op, store.ErrNotFound)
	}
	return wrapOp(op, err)
}

// GetWebhookSecret returns the pipeline's sealed webhook secret.
func (s *Store) GetWebhookSecret(ctx context.Context, pipelineID string) (*store.PipelineWebhook, error) {
	op := "get webhook secret of pipeline " + pipelineID
	w, err := scanWebhook(s.queryRow(ctx, s.r, `SELECT `+webhookCols+` FROM pipeline_webhooks WHERE pipeline_id = ?`, pipelineID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return w, nil
}

// ListWebhookSecrets lists every pipeline's sealed webhook secret.
func (s *Store) ListWebhookSecrets(ctx context.Context) ([]*store.PipelineWebhook, error) {
	rows, err := s.query(ctx, s.r, `SELECT `+webhookCols+` FROM pipeline_webhooks ORDER BY pipeline_id`)
	if err != nil {
		return nil, fmt.Errorf("list webhook secrets: %w", err)
	}
	list, err := collect(rows, scanWebhook)
	if err != nil {
		return nil, fmt.Errorf("list webhook secrets: %w", err)
	}
	return list, nil
}

const deliveryCols = `pipeline_id, provider, delivery_id, run_ids, status, reason, created_at`

func scanDelivery(sc scanner) (*store.WebhookDelivery, error) {
	var (
		d       store.WebhookDelivery
		runIDs  string
		created int64
	)
	if err := sc.Scan(&d.PipelineID, &d.Provider, &d.DeliveryID, &runIDs, &d.Status, &d.Reason, &created); err != nil {
		return nil, err
	}
	if err := decodeJSON(runIDs, &d.RunIDs); err != nil {
		return nil, err
	}
	if d.RunIDs == nil {
		d.RunIDs = []string{}
	}
	d.CreatedAt = fromMicros(created)
	return &d, nil
}

// RecordDelivery inserts the delivery unless it is recorded; the insert is
// one statement (ON CONFLICT DO NOTHING), so concurrent calls store one row
// and every caller reads that row back.
func (s *Store) RecordDelivery(ctx context.Context, d *store.WebhookDelivery) (*store.WebhookDelivery, bool, error) {
	op := "record webhook delivery"
	switch {
	case d == nil || d.PipelineID == "" || d.Provider == "" || d.DeliveryID == "":
		return nil, false, invalid(op, "the pipeline id, provider and delivery id must not be empty")
	case d.Status != "triggered" && d.Status != "ignored":
		return nil, false, invalid(op, fmt.Sprintf("the status must be triggered or ignored, got %q", d.Status))
	}
	op += fmt.Sprintf(" %s/%s of pipeline %s", d.Provider, d.DeliveryID, d.PipelineID)
	ids := d.RunIDs
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", op, err)
	}
	var (
		got      *store.WebhookDelivery
		inserted bool
	)
	err = s.writeTx(ctx, true, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `INSERT INTO webhook_deliveries (`+deliveryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (pipeline_id, provider, delivery_id) DO NOTHING`,
			d.PipelineID, d.Provider, d.DeliveryID, string(b), d.Status, d.Reason, micros(orNow(d.CreatedAt, s.nowUTC())))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		inserted = n > 0
		got, err = scanDelivery(s.queryRow(ctx, tx, `SELECT `+deliveryCols+` FROM webhook_deliveries
			WHERE pipeline_id = ? AND provider = ? AND delivery_id = ?`, d.PipelineID, d.Provider, d.DeliveryID))
		return err
	})
	if s.d.isForeignKey(err) {
		return nil, false, fmt.Errorf("%s: no such pipeline: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return nil, false, wrapOp(op, err)
	}
	return got, !inserted, nil
}

// GetDelivery returns a recorded delivery.
func (s *Store) GetDelivery(ctx context.Context, pipelineID, provider, deliveryID string) (*store.WebhookDelivery, error) {
	op := fmt.Sprintf("get webhook delivery %s/%s of pipeline %s", provider, deliveryID, pipelineID)
	d, err := scanDelivery(s.queryRow(ctx, s.r, `SELECT `+deliveryCols+` FROM webhook_deliveries
		WHERE pipeline_id = ? AND provider = ? AND delivery_id = ?`, pipelineID, provider, deliveryID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(op)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return d, nil
}

// DeleteDeliveriesBefore forgets deliveries recorded before the time.
func (s *Store) DeleteDeliveriesBefore(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.writeTx(ctx, false, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM webhook_deliveries WHERE created_at < ?`, micros(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete webhook deliveries before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}
