package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// drain returns what is buffered in ch without waiting.
func drain(ch <-chan string) []string {
	var got []string
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, m)
		default:
			return got
		}
	}
}

func isClosed(ch <-chan string) bool {
	select {
	case _, ok := <-ch:
		return !ok
	case <-time.After(time.Second):
		return false
	}
}

func TestLocalFanOut(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	ctx := context.Background()

	var subs []<-chan string
	for range 3 {
		ch, _ := b.Subscribe("run.r1.cancel", 4)
		subs = append(subs, ch)
	}
	other, _ := b.Subscribe("queue", 4)

	if err := b.Publish(ctx, "run.r1.cancel", "a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "run.r1.cancel", "b:c"); err != nil {
		t.Fatal(err)
	}
	// Local delivery is synchronous: everything is buffered when Publish returns.
	for i, ch := range subs {
		if got := drain(ch); strings.Join(got, ",") != "a,b:c" {
			t.Errorf("subscriber %d got %q, want [a b:c]", i, got)
		}
	}
	if got := drain(other); len(got) != 0 {
		t.Errorf("subscriber of another topic got %q", got)
	}
	if err := b.Publish(ctx, "nobody.listens", "x"); err != nil {
		t.Errorf("publish without subscribers: %v", err)
	}
	if s := b.Stats(); s != (Stats{Published: 3, Delivered: 6}) {
		t.Errorf("stats = %+v", s)
	}
}

func TestLocalUnsubscribe(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	ctx := context.Background()

	ch1, stop1 := b.Subscribe("queue", 4)
	ch2, stop2 := b.Subscribe("queue", 4)
	stop1()
	stop1() // safe twice
	if !isClosed(ch1) {
		t.Fatal("channel not closed by unsubscribe")
	}
	if err := b.Publish(ctx, "queue", "x"); err != nil {
		t.Fatal(err)
	}
	if got := drain(ch2); len(got) != 1 || got[0] != "x" {
		t.Errorf("remaining subscriber got %q", got)
	}
	stop2()
	if n := b.topics(); n != 0 {
		t.Errorf("%d topics left after every subscription ended", n)
	}
	if err := b.Publish(ctx, "queue", "y"); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Delivered != 1 || s.Dropped != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestLocalFullSubscriberDrops(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	ctx := context.Background()

	stuck, _ := b.Subscribe("queue", 1) // never read
	zero, _ := b.Subscribe("queue", 0)  // buffer raised to 1
	live, _ := b.Subscribe("queue", 100)
	if cap(zero) != 1 {
		t.Errorf("buf 0 gave capacity %d, want 1", cap(zero))
	}

	done := make(chan error)
	go func() {
		for i := range 50 {
			if err := b.Publish(ctx, "queue", fmt.Sprint(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}

	if got := drain(stuck); len(got) != 1 || got[0] != "0" {
		t.Errorf("full subscriber got %q, want [0]", got)
	}
	got := drain(live)
	if len(got) != 50 {
		t.Fatalf("live subscriber got %d messages, want 50", len(got))
	}
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %q: out of order", i, m)
		}
	}
	if s := b.Stats(); s.Published != 50 || s.Delivered != 52 || s.Dropped != 98 {
		t.Errorf("stats = %+v, want Published 50, Delivered 52, Dropped 98", s)
	}
}

func TestLocalResyncMakesRoom(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	full, _ := b.Subscribe("queue", 2)
	roomy, _ := b.Subscribe("run.x", 4)
	_ = b.Publish(context.Background(), "queue", "old1")
	_ = b.Publish(context.Background(), "queue", "old2")

	b.resync()

	if got := drain(full); strings.Join(got, ",") != "old2," {
		t.Errorf("full subscriber got %q, want [old2 \"\"]: the oldest message makes room for the resync", got)
	}
	if got := drain(roomy); len(got) != 1 || got[0] != "" {
		t.Errorf("subscriber got %q, want [\"\"]", got)
	}
	if s := b.Stats(); s.Dropped != 1 {
		t.Errorf("Dropped = %d, want 1 (the evicted message)", s.Dropped)
	}
}

func TestValidTopic(t *testing.T) {
	for _, topic := range []string{"queue", "run.run_abc123.cancel", "a", strings.Repeat("a", MaxTopic), "a-b_c.d9"} {
		if err := ValidTopic(topic); err != nil {
			t.Errorf("ValidTopic(%q) = %v", topic, err)
		}
	}
	for topic := range badTopics {
		if ValidTopic(topic) == nil {
			t.Errorf("ValidTopic(%q) = nil", topic)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invalid character") {
			t.Errorf("Subscribe on an invalid topic: recovered %v, want a panic naming the problem", r)
		}
	}()
	NewLocal().Subscribe("Bad Topic", 1)
}

var (
	badTopics = map[string]string{
		"":                      "empty",
		strings.Repeat("a", 65): "65-byte",
		"Queue":                 "uppercase",
		"run 1":                 "space",
		"run/1":                 "slash",
		"run:1":                 "separator",
		"caf\u00e9":             "non-ASCII",
		"run.r1\x00":            "NUL",
		"queue\n":               "newline",
		"run.RUN_ABC.cancel":    "uppercase-id",
	}
	badPayloads = map[string]string{
		strings.Repeat("x", MaxPayload+1): "too long",
		"\xff\xfe":                        "invalid UTF-8",
		"a\x00b":                          "NUL",
	}
)

// checkRejects publishes invalid messages on b, which must refuse them all
// and deliver nothing to sub (a subscriber of "queue").
func checkRejects(t *testing.T, b Bus, sub <-chan string) {
	t.Helper()
	for topic, why := range badTopics {
		err := b.Publish(context.Background(), topic, "x")
		if err == nil || !strings.HasPrefix(err.Error(), "bus: ") {
			t.Errorf("Publish on %s topic %q: err = %v, want a bus error", why, topic, err)
		}
	}
	for payload, why := range badPayloads {
		err := b.Publish(context.Background(), "queue", payload)
		if err == nil || !strings.Contains(err.Error(), "payload") {
			t.Errorf("Publish of %s payload: err = %v, want a payload error", why, err)
		} else {
			t.Logf("%s payload: %v", why, err)
		}
	}
	if got := drain(sub); len(got) != 0 {
		t.Errorf("invalid messages were delivered: %q", got)
	}
}

func TestLocalValidation(t *testing.T) {
	b := NewLocal()
	defer b.Close()
	ch, _ := b.Subscribe("queue", 10)
	checkRejects(t, b, ch)
	if s := b.Stats(); s != (Stats{}) {
		t.Errorf("stats after invalid publishes = %+v, want zero", s)
	}
	// The limits themselves are fine, and so is "".
	for _, p := range []string{strings.Repeat("é", MaxPayload/2), ""} {
		if err := b.Publish(context.Background(), "queue", p); err != nil {
			t.Errorf("Publish of a %d-byte payload: %v", len(p), err)
		}
	}
	if got := drain(ch); len(got) != 2 {
		t.Errorf("got %d messages, want 2", len(got))
	}
}

func TestLocalClose(t *testing.T) {
	b := NewLocal()
	ch1, stop1 := b.Subscribe("queue", 1)
	ch2, _ := b.Subscribe("run.x", 1)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch1) || !isClosed(ch2) {
		t.Fatal("Close left a subscription channel open")
	}
	stop1() // after Close: no double close
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.Publish(context.Background(), "queue", "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close: %v, want ErrClosed", err)
	}
	ch3, stop3 := b.Subscribe("queue", 1)
	if !isClosed(ch3) {
		t.Error("Subscribe after Close returned an open channel")
	}
	stop3()
}

// TestLocalConcurrent is for the race detector: publishers, subscribers
// coming and going, and Close, all at once.
func TestLocalConcurrent(t *testing.T) {
	b := NewLocal()
	ctx := context.Background()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := range 500 {
				err := b.Publish(ctx, "queue", fmt.Sprint(p, i))
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 100 {
				ch, stop := b.Subscribe("queue", 2)
				<-ch // a message, or closed by Close
				stop()
				stop()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			b.resync()
		}
	})
	time.Sleep(10 * time.Millisecond)
	_ = b.Close()
	wg.Wait()
}
