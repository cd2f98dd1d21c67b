package storetest

import (
	"sync/atomic"
	"testing"

	"github.com/runnel-ci/runnel/internal/store"
)

func testCron(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("StartAdvance", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "nightly")
		st := &store.CronTick{PipelineID: p.ID, ScheduleKey: "0", Schedule: "0 4 * * *|UTC", LastTick: at(0)}
		got, err := f.st.StartCronSchedule(f.ctx, st)
		noErr(t, "StartCronSchedule", err)
		sameJSON(t, "started", got, st)

		// Starting the same schedule again keeps the recorded tick: a second
		// replica must not move it back or forward.
		again, err := f.st.StartCronSchedule(f.ctx, &store.CronTick{PipelineID: p.ID, ScheduleKey: "0",
			Schedule: st.Schedule, LastTick: at(500)})
		noErr(t, "StartCronSchedule again", err)
		sameJSON(t, "started again", again, st)

		ok, err := f.st.AdvanceCronTick(f.ctx, p.ID, "0", st.Schedule, at(60))
		noErr(t, "AdvanceCronTick", err)
		if !ok {
			t.Fatal("AdvanceCronTick to a later tick: not changed")
		}
		ok, err = f.st.AdvanceCronTick(f.ctx, p.ID, "0", st.Schedule, at(30))
		noErr(t, "AdvanceCronTick back", err)
		if ok {
			t.Fatal("AdvanceCronTick moved the tick back")
		}
		ok, err = f.st.AdvanceCronTick(f.ctx, p.ID, "0", "other|UTC", at(120))
		noErr(t, "AdvanceCronTick other schedule", err)
		if ok {
			t.Fatal("AdvanceCronTick advanced a schedule that is no longer recorded")
		}
		_, err = f.st.AdvanceCronTick(f.ctx, p.ID, "9", st.Schedule, at(120))
		wantErr(t, "AdvanceCronTick unknown key", err, store.ErrNotFound)

		// A changed definition starts afresh.
		changed := &store.CronTick{PipelineID: p.ID, ScheduleKey: "0", Schedule: "0 5 * * *|UTC", LastTick: at(900)}
		got, err = f.st.StartCronSchedule(f.ctx, changed)
		noErr(t, "StartCronSchedule changed", err)
		sameJSON(t, "restarted", got, changed)

		flat := &store.CronTick{PipelineID: p.ID, ScheduleKey: "pipeline", Schedule: "* * * * *|Asia/Hong_Kong", LastTick: at(1)}
		_, err = f.st.StartCronSchedule(f.ctx, flat)
		noErr(t, "StartCronSchedule flat", err)
		list, err := f.st.ListCronTicks(f.ctx)
		noErr(t, "ListCronTicks", err)
		sameJSON(t, "listed", list, []*store.CronTick{changed, flat})
		for _, x := range list {
			utc(t, "cron tick", &x.LastTick)
		}

		_, err = f.st.StartCronSchedule(f.ctx, &store.CronTick{PipelineID: "nope", ScheduleKey: "0", Schedule: "x", LastTick: at(0)})
		wantErr(t, "StartCronSchedule unknown pipeline", err, store.ErrNotFound)
		_, err = f.st.StartCronSchedule(f.ctx, &store.CronTick{PipelineID: p.ID})
		wantErr(t, "StartCronSchedule empty", err, store.ErrInvalid)

		// The state goes with its pipeline.
		noErr(t, "DeletePipeline", f.st.DeletePipeline(f.ctx, p.ID))
		list, err = f.st.ListCronTicks(f.ctx)
		noErr(t, "ListCronTicks after delete", err)
		if len(list) != 0 {
			t.Fatalf("cron state of a deleted pipeline kept: %d rows", len(list))
		}
	})

	t.Run("ConcurrentAdvance", func(t *testing.T) {
		t.Parallel()
		f := newFx(t, open)
		p := f.pipeline("proj", "race")
		const sched = "* * * * *|UTC"
		_, err := f.st.StartCronSchedule(f.ctx, &store.CronTick{PipelineID: p.ID, ScheduleKey: "pipeline", Schedule: sched, LastTick: at(0)})
		noErr(t, "StartCronSchedule", err)
		var won atomic.Int32
		errs := make([]error, 8)
		parallel(8, func(i int) {
			ok, err := f.st.AdvanceCronTick(f.ctx, p.ID, "pipeline", sched, at(60))
			errs[i] = err
			if ok {
				won.Add(1)
			}
		})
		for _, err := range errs {
			noErr(t, "AdvanceCronTick", err)
		}
		if n := won.Load(); n != 1 {
			t.Fatalf("%d concurrent advances to one tick changed the row; want 1", n)
		}
	})
}
