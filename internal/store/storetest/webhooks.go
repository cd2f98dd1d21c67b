package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

func testWebhooks(t *testing.T, open func(t *testing.T) store.Store) {
	f := newFx(t, open)
	p := f.pipeline("proj", "hooked")
	other := f.pipeline("proj", "other")

	_, err := f.st.GetWebhookSecret(f.ctx, p.ID)
	wantErr(t, "GetWebhookSecret before any", err, store.ErrNotFound)
	wantErr(t, "no ciphertext", f.st.SetWebhookSecret(f.ctx, &store.PipelineWebhook{PipelineID: p.ID, KeyID: "k1"}), store.ErrInvalid)
	wantErr(t, "unknown pipeline", f.st.SetWebhookSecret(f.ctx, &store.PipelineWebhook{PipelineID: "pl_missing", Ciphertext: []byte("x"), KeyID: "k1"}), store.ErrNotFound)

	noErr(t, "SetWebhookSecret", f.st.SetWebhookSecret(f.ctx, &store.PipelineWebhook{PipelineID: p.ID, Ciphertext: []byte("ct-1"), KeyID: "k1", CreatedAt: at(0), UpdatedAt: at(0)}))
	noErr(t, "SetWebhookSecret other", f.st.SetWebhookSecret(f.ctx, &store.PipelineWebhook{PipelineID: other.ID, Ciphertext: []byte("ct-o"), KeyID: "k1", CreatedAt: at(0), UpdatedAt: at(0)}))
	// Replacing keeps the creation time.
	noErr(t, "SetWebhookSecret again", f.st.SetWebhookSecret(f.ctx, &store.PipelineWebhook{PipelineID: p.ID, Ciphertext: []byte("ct-2"), KeyID: "k2", CreatedAt: at(60), UpdatedAt: at(60)}))
	w, err := f.st.GetWebhookSecret(f.ctx, p.ID)
	noErr(t, "GetWebhookSecret", err)
	if !bytes.Equal(w.Ciphertext, []byte("ct-2")) || w.KeyID != "k2" || !w.CreatedAt.Equal(at(0)) || !w.UpdatedAt.Equal(at(60)) {
		t.Errorf("after replacing: %+v", w)
	}
	list, err := f.st.ListWebhookSecrets(f.ctx)
	noErr(t, "ListWebhookSecrets", err)
	if len(list) != 2 {
		t.Errorf("ListWebhookSecrets: %d entries, want 2", len(list))
	}

	// Deliveries: the first record wins, the same id again is a replay.
	d := &store.WebhookDelivery{PipelineID: p.ID, Provider: "github", DeliveryID: "72d3162e", RunIDs: []string{"run_a"}, Status: "triggered", CreatedAt: at(1)}
	got, replayed, err := f.st.RecordDelivery(f.ctx, d)
	noErr(t, "RecordDelivery", err)
	if replayed || !slices.Equal(got.RunIDs, []string{"run_a"}) || got.Status != "triggered" || !got.CreatedAt.Equal(at(1)) {
		t.Errorf("RecordDelivery: %+v replayed=%v", got, replayed)
	}
	again := &store.WebhookDelivery{PipelineID: p.ID, Provider: "github", DeliveryID: "72d3162e", Status: "ignored", Reason: "later"}
	got, replayed, err = f.st.RecordDelivery(f.ctx, again)
	noErr(t, "RecordDelivery again", err)
	if !replayed || !slices.Equal(got.RunIDs, []string{"run_a"}) || got.Status != "triggered" || got.Reason != "" {
		t.Errorf("a replayed delivery must return the first record: %+v replayed=%v", got, replayed)
	}
	// Same id from another provider or for another pipeline is another delivery.
	for _, x := range []*store.WebhookDelivery{
		{PipelineID: p.ID, Provider: "gitea", DeliveryID: "72d3162e", Status: "ignored", Reason: `branch "dev" is not included`},
		{PipelineID: other.ID, Provider: "github", DeliveryID: "72d3162e", Status: "ignored"},
	} {
		got, replayed, err := f.st.RecordDelivery(f.ctx, x)
		noErr(t, "RecordDelivery "+x.Provider, err)
		if replayed || len(got.RunIDs) != 0 || got.RunIDs == nil || got.Reason != x.Reason {
			t.Errorf("RecordDelivery %s/%s: %+v replayed=%v", x.PipelineID, x.Provider, got, replayed)
		}
	}
	g, err := f.st.GetDelivery(f.ctx, p.ID, "gitea", "72d3162e")
	noErr(t, "GetDelivery", err)
	if g.Status != "ignored" || g.Reason != `branch "dev" is not included` {
		t.Errorf("GetDelivery: %+v", g)
	}
	_, err = f.st.GetDelivery(f.ctx, p.ID, "gitlab", "72d3162e")
	wantErr(t, "GetDelivery missing", err, store.ErrNotFound)
	// Retention: deliveries recorded before the time go, the others stay.
	n, err := f.st.DeleteDeliveriesBefore(f.ctx, at(2))
	noErr(t, "DeleteDeliveriesBefore", err)
	if n != 1 {
		t.Errorf("DeleteDeliveriesBefore deleted %d, want 1", n)
	}
	_, err = f.st.GetDelivery(f.ctx, p.ID, "github", "72d3162e")
	wantErr(t, "GetDelivery after retention", err, store.ErrNotFound)
	if _, err := f.st.GetDelivery(f.ctx, p.ID, "gitea", "72d3162e"); err != nil {
		t.Errorf("a newer delivery was deleted: %v", err)
	}
	_, _, err = f.st.RecordDelivery(f.ctx, &store.WebhookDelivery{PipelineID: "pl_missing", Provider: "github", DeliveryID: "x", Status: "ignored"})
	wantErr(t, "RecordDelivery unknown pipeline", err, store.ErrNotFound)
	_, _, err = f.st.RecordDelivery(f.ctx, &store.WebhookDelivery{PipelineID: p.ID, Provider: "github", DeliveryID: "y", Status: "maybe"})
	wantErr(t, "RecordDelivery bad status", err, store.ErrInvalid)

	// Concurrent records of one delivery: exactly one is not a replay.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		fresh int
		errs  []error
	)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, replayed, err := f.st.RecordDelivery(f.ctx, &store.WebhookDelivery{PipelineID: p.ID, Provider: "gitlab", DeliveryID: "burst",
				RunIDs: []string{fmt.Sprintf("run_%d", i)}, Status: "triggered"})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if !replayed {
				fresh++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 || fresh != 1 {
		t.Errorf("10 concurrent records: %d fresh, errors %v; want exactly 1 fresh", fresh, errs)
	}

	// Both go with the pipeline.
	noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
	_, err = f.st.GetWebhookSecret(f.ctx, p.ID)
	wantErr(t, "secret after the pipeline's deletion", err, store.ErrNotFound)
	_, err = f.st.GetDelivery(f.ctx, p.ID, "github", "72d3162e")
	wantErr(t, "delivery after the pipeline's deletion", err, store.ErrNotFound)
	if _, err := f.st.GetDelivery(f.ctx, other.ID, "github", "72d3162e"); err != nil {
		t.Errorf("another pipeline's delivery went too: %v", err)
	}
}
