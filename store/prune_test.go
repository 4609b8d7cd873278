package store_test

import (
	"context"
	"testing"

	"mixmaster"
)

func TestDeleteJobRemovesEveryIndexEntry(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	job := webhookJob("app")
	job.DeliveryID = "d-1"
	job.Key = "k-1"
	j := MustCreate(t, db, job)
	MustClaimID(t, db, j.ID)
	MustFinish(t, db, j.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})
	other := MustCreate(t, db, webhookJob("app"))

	if err := db.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Job(ctx, j.ID); mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
		t.Fatalf("job after delete: %v, want ENOTFOUND", err)
	}
	for _, f := range []mixmaster.JobFilter{{Project: "app"}, {Status: mixmaster.StatusSucceeded}, {}} {
		list, err := db.Jobs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range list {
			if l.ID == j.ID {
				t.Errorf("Jobs(%+v) still lists the deleted job", f)
			}
		}
	}
	if got, err := db.LatestByKey(ctx, "k-1"); err != nil || got != nil {
		t.Errorf("LatestByKey after delete = %v, %v; want nil", got, err)
	}
	// The delivery is forgotten: a redelivery queues a new job.
	again := webhookJob("app")
	again.DeliveryID = "d-1"
	if _, created, err := db.CreateJob(ctx, again); err != nil || !created {
		t.Errorf("redelivery after delete: created %v, %v; want a new job", created, err)
	}
	if MustJob(t, db, other.ID) == nil {
		t.Error("another job went too")
	}
}

func TestDeleteJobRefusesLiveJobsAndGroupHeads(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	queued := MustCreate(t, db, webhookJob("app"))
	running := MustCreate(t, db, webhookJob("app"))
	MustClaimID(t, db, running.ID)

	art := &mixmaster.Job{Kind: mixmaster.KindArtifact, Trigger: mixmaster.TriggerAPI, Project: "lib", Group: "g", Key: "k"}
	head := MustCreate(t, db, art)
	MustClaimID(t, db, head.ID)
	MustFinish(t, db, head.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})

	for _, id := range []mixmaster.JobID{queued.ID, running.ID, head.ID} {
		if err := db.DeleteJob(ctx, id); mixmaster.ErrorCode(err) != mixmaster.ECONFLICT {
			t.Errorf("DeleteJob(%d) = %v, want ECONFLICT", id, err)
		}
		MustJob(t, db, id)
	}
	if err := db.DeleteJob(ctx, 999); mixmaster.ErrorCode(err) != mixmaster.ENOTFOUND {
		t.Errorf("DeleteJob(unknown) = %v, want ENOTFOUND", err)
	}

	// Once a newer build heads the group, the old one may go.
	next := MustCreate(t, db, art)
	MustClaimID(t, db, next.ID)
	MustFinish(t, db, next.ID, mixmaster.Outcome{Status: mixmaster.StatusSucceeded})
	if err := db.DeleteJob(ctx, head.ID); err != nil {
		t.Fatalf("DeleteJob(old head) = %v", err)
	}
	if got, _ := db.LatestByKey(ctx, "k"); got == nil || got.ID != next.ID {
		t.Errorf("LatestByKey = %v, want job %d", got, next.ID)
	}
}
