package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	bolt "go.etcd.io/bbolt"

	"mixmaster"
)

// Page sizes for Jobs.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// maxKeyLen bounds strings used as bbolt keys or bucket names (project,
// delivery ID, content key); bbolt's own limit is 32 KiB.
const maxKeyLen = 1024

// errNoChange makes an Update transaction roll back instead of committing,
// because a commit costs an fsync even when nothing changed.
var errNoChange = errors.New("no change")

// CreateJob validates job, assigns it an ID, stores it as queued with its
// index entries and appends it to the queue, all in one durable
// transaction (which concurrent calls may share), then wakes the runner.
// job itself is not modified. When job.DeliveryID was already accepted it
// returns the earlier job, created false, and writes nothing. It returns
// EINVALID for a job that is not new and queued, has no project or has an
// unknown kind.
func (db *DB) CreateJob(ctx context.Context, job *mixmaster.Job) (*mixmaster.Job, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := validateNew(job); err != nil {
		return nil, false, err
	}
	// Deep copy through JSON so the stored job shares nothing with the
	// caller's, including the Params map.
	data, err := json.Marshal(job)
	if err != nil {
		return nil, false, fmt.Errorf("store: create job: %w", err)
	}
	stored := new(mixmaster.Job)
	if err := json.Unmarshal(data, stored); err != nil {
		return nil, false, fmt.Errorf("store: create job: %w", err)
	}
	if stored.QueuedAt.IsZero() {
		stored.QueuedAt = db.now()
	} else {
		stored.QueuedAt = stored.QueuedAt.UTC().Round(0)
	}

	if stored.DeliveryID != "" {
		// A redelivery is answered from a read: a write transaction would
		// cost an fsync to change nothing.
		var prev *mixmaster.Job
		err := db.bolt.View(func(tx *bolt.Tx) error {
			var err error
			prev, err = deliveredJob(tx, stored.DeliveryID)
			return err
		})
		if err != nil {
			return nil, false, wrap("create job", err)
		}
		if prev != nil {
			return prev, false, nil
		}
	}

	// Concurrent calls share one fsynced commit through bbolt's Batch; a
	// burst would otherwise be accepted at one fsync per job. Batch returns
	// only once the shared transaction is committed, so the job is durable
	// before it is acknowledged. With one or two calls in flight each
	// commits at once instead: Batch would first wait MaxBatchDelay for
	// company, longer than the second call waits for the first's commit.
	commit := db.bolt.Batch
	if db.creating.Add(1) <= 2 {
		commit = db.bolt.Update
	}
	defer db.creating.Add(-1)
	// Batch reruns fn when another call in the batch fails (the shared
	// transaction is rolled back), so fn starts from the same state each run.
	template := *stored
	var result *mixmaster.Job
	created := false
	err = commit(func(tx *bolt.Tx) error {
		result, created = nil, false
		if template.DeliveryID != "" {
			// The delivery may have been stored since the read above, by
			// another commit or earlier in this batch.
			prev, err := deliveredJob(tx, template.DeliveryID)
			if err != nil || prev != nil {
				result = prev
				return err
			}
		}
		job := template // insertJob sets only ID and Status
		if err := insertJob(tx, &job); err != nil {
			return err
		}
		result, created = &job, true
		return nil
	})
	if err != nil {
		return nil, false, wrap("create job", err)
	}
	if created {
		db.wake()
	}
	return result, created, nil
}

// deliveredJob returns the job stored for a delivery ID, or nil.
func deliveredJob(tx *bolt.Tx, deliveryID string) (*mixmaster.Job, error) {
	v := tx.Bucket(bucketDeliveries).Get([]byte(deliveryID))
	if v == nil {
		return nil, nil
	}
	return getJob(tx, mixmaster.JobID(btoi(v)))
}

// validateNew checks what CreateJob needs; everything else is the
// caller's business.
func validateNew(job *mixmaster.Job) error {
	switch {
	case job == nil:
		return mixmaster.Errorf(mixmaster.EINVALID, "no job given")
	case job.Status != "" && job.Status != mixmaster.StatusQueued:
		return mixmaster.Errorf(mixmaster.EINVALID, "a new job must be queued, not %s", job.Status)
	case job.Project == "":
		return mixmaster.Errorf(mixmaster.EINVALID, "project is required")
	case job.Kind != mixmaster.KindWebhook && job.Kind != mixmaster.KindArtifact:
		return mixmaster.Errorf(mixmaster.EINVALID, "unknown job kind %q", job.Kind)
	case len(job.Project) > maxKeyLen:
		return mixmaster.Errorf(mixmaster.EINVALID, "project name is too long")
	case len(job.DeliveryID) > maxKeyLen:
		return mixmaster.Errorf(mixmaster.EINVALID, "delivery ID is too long")
	case len(job.Key) > maxKeyLen:
		return mixmaster.Errorf(mixmaster.EINVALID, "job key is too long")
	}
	return nil
}

// insertJob gives a new job the next ID, makes it queued and writes it, its
// queue entry and its index entries.
func insertJob(tx *bolt.Tx, job *mixmaster.Job) error {
	jobs := tx.Bucket(bucketJobs)
	seq, err := jobs.NextSequence()
	if err != nil {
		return err
	}
	job.ID = mixmaster.JobID(seq)
	job.Status = "" // not in any status index yet
	if err := setStatus(tx, job, mixmaster.StatusQueued); err != nil {
		return err
	}
	if err := putJob(tx, job); err != nil {
		return err
	}
	id := itob(seq)
	if err := enqueue(tx, id); err != nil {
		return err
	}
	pj, err := tx.Bucket(bucketProjectJobs).CreateBucketIfNotExists([]byte(job.Project))
	if err != nil {
		return fmt.Errorf("project index: %w", err)
	}
	if err := pj.Put(id, nil); err != nil {
		return err
	}
	if job.DeliveryID != "" {
		if err := tx.Bucket(bucketDeliveries).Put([]byte(job.DeliveryID), id); err != nil {
			return err
		}
	}
	return addKey(tx, job.Key, id)
}

// Job returns the job with the given ID, or an ENOTFOUND error.
func (db *DB) Job(ctx context.Context, id mixmaster.JobID) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var job *mixmaster.Job
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		job, err = getJob(tx, id)
		return err
	})
	return job, wrap("get job", err)
}

// LatestByKey returns the newest job, in any status, whose Key is key, or
// nil and no error when there is none. It returns EINVALID for an empty key.
func (db *DB) LatestByKey(ctx context.Context, key string) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if key == "" || len(key) > maxKeyLen {
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "invalid job key")
	}
	var job *mixmaster.Job
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys).Bucket([]byte(key))
		if b == nil {
			return nil
		}
		k, _ := b.Cursor().Last()
		if k == nil {
			return nil
		}
		var err error
		job, err = getJob(tx, mixmaster.JobID(btoi(k)))
		return err
	})
	return job, wrap("latest by key", err)
}

// Jobs lists jobs matching f, newest first. Filters are served by the
// project and status indexes with cursor seeks, so only the jobs on the
// page are decoded, however many jobs the store holds. It returns EINVALID
// for an unknown status.
func (db *DB) Jobs(ctx context.Context, f mixmaster.JobFilter) ([]*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.Status != "" && !f.Status.Valid() {
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "unknown status %q", f.Status)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	out := make([]*mixmaster.Job, 0, min(limit, 64))
	err := db.bolt.View(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		var project, status *bolt.Bucket
		if f.Project != "" {
			if project = tx.Bucket(bucketProjectJobs).Bucket([]byte(f.Project)); project == nil {
				return nil
			}
		}
		if f.Status != "" {
			if status = tx.Bucket(bucketStatuses).Bucket([]byte(f.Status)); status == nil {
				return nil
			}
		}
		var ids iter.Seq2[[]byte, []byte]
		switch {
		case project != nil && status != nil:
			ids = intersect(project, status, f.Before)
		case project != nil:
			ids = descending(project, f.Before)
		case status != nil:
			ids = descending(status, f.Before)
		default:
			ids = descending(jobs, f.Before)
		}
		for k, v := range ids {
			if v == nil {
				v = jobs.Get(k)
				if v == nil {
					continue // an index entry without a job: skip, don't fail the page
				}
			}
			job, err := decodeJob(v)
			if err != nil {
				return fmt.Errorf("job %d: %w", btoi(k), err)
			}
			if f.Status != "" && job.Status != f.Status || f.Project != "" && job.Project != f.Project {
				continue // only an index out of step could get here
			}
			out = append(out, job)
			if len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list jobs", err)
	}
	return out, nil
}

// descending yields the keys of b below before (all keys when before is 0)
// from the largest down, and their values when they are not empty. It
// seeks rather than scans, so a page deep in a large bucket costs no more
// than the first.
func descending(b *bolt.Bucket, before mixmaster.JobID) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		c := b.Cursor()
		k, v := seekBelow(c, before)
		for ; k != nil; k, v = c.Prev() {
			if len(v) == 0 {
				v = nil
			}
			if !yield(k, v) {
				return
			}
		}
	}
}

// intersect yields the keys below before that are in both a and b, from
// the largest down, with nil values. The cursors leapfrog: each seeks to
// the other's key, so runs of keys in only one bucket are skipped in one
// step rather than walked.
func intersect(a, b *bolt.Bucket, before mixmaster.JobID) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		ca, cb := a.Cursor(), b.Cursor()
		ka, _ := seekBelow(ca, before)
		for ka != nil {
			kb := seekAtMost(cb, ka)
			if kb == nil {
				return
			}
			if !bytes.Equal(ka, kb) {
				ka = seekAtMost(ca, kb)
				continue
			}
			if !yield(ka, nil) {
				return
			}
			ka, _ = ca.Prev()
		}
	}
}

// seekBelow moves c to its largest key below before, or to its last key
// when before is 0.
func seekBelow(c *bolt.Cursor, before mixmaster.JobID) ([]byte, []byte) {
	if before == 0 {
		return c.Last()
	}
	if k, _ := c.Seek(itob(uint64(before))); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// seekAtMost moves c to its largest key not above key and returns it, or
// nil when every key is above.
func seekAtMost(c *bolt.Cursor, key []byte) []byte {
	k, _ := c.Seek(key)
	if k == nil {
		k, _ = c.Last()
	} else if !bytes.Equal(k, key) {
		k, _ = c.Prev()
	}
	return k
}

// Claim moves the oldest queued job that accept returns true for to
// running, sets StartedAt and returns it; nil and no error when accept
// takes none. A nil accept takes the first job. accept runs inside the
// write transaction, so it must be quick, must not modify the job and must
// not call the store. Queue entries whose job is no longer queued are
// dropped on the way. The cost grows with the number of jobs accept
// refuses, which the backlog limit keeps small.
func (db *DB) Claim(ctx context.Context, accept func(*mixmaster.Job) bool) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var claimed *mixmaster.Job
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		queue := tx.Bucket(bucketQueue)
		jobs := tx.Bucket(bucketJobs)
		var drop [][]byte
		c := queue.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			data := jobs.Get(v)
			if data == nil {
				drop = append(drop, bytes.Clone(k))
				continue
			}
			job, err := decodeJob(data)
			if err != nil {
				return fmt.Errorf("job %d: %w", btoi(v), err)
			}
			if job.Status != mixmaster.StatusQueued {
				drop = append(drop, bytes.Clone(k))
				continue
			}
			if accept == nil || accept(job) {
				claimed = job
				drop = append(drop, bytes.Clone(k))
				break
			}
		}
		// Deleting after the walk: a bbolt cursor may skip the next key
		// after Cursor.Delete.
		for _, k := range drop {
			if err := queue.Delete(k); err != nil {
				return err
			}
		}
		if claimed == nil {
			if len(drop) == 0 {
				return errNoChange
			}
			return nil
		}
		if err := setStatus(tx, claimed, mixmaster.StatusRunning); err != nil {
			return err
		}
		claimed.StartedAt = db.now()
		return putJob(tx, claimed)
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return nil, wrap("claim", err)
	}
	return claimed, nil
}

// Finish records the outcome of a job and sets FinishedAt. o.Commit, when
// set, replaces the job's commit. It returns ENOTFOUND for an unknown job,
// EINVALID when o.Status is not final and ECONFLICT when the job may not
// move to o.Status (it is already finished, or queued and o.Status is not
// canceled).
func (db *DB) Finish(ctx context.Context, id mixmaster.JobID, o mixmaster.Outcome) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !o.Status.Done() {
		return nil, mixmaster.Errorf(mixmaster.EINVALID, "%q is not a final status", o.Status)
	}
	var job *mixmaster.Job
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		if job, err = getJob(tx, id); err != nil {
			return err
		}
		if !job.Status.CanBecome(o.Status) {
			return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s and cannot become %s", id, job.Status, o.Status)
		}
		if err := leaveQueue(tx, job); err != nil {
			return err
		}
		if err := setStatus(tx, job, o.Status); err != nil {
			return err
		}
		job.ExitCode = nil
		if o.ExitCode != nil {
			code := *o.ExitCode
			job.ExitCode = &code
		}
		job.Error = o.Error
		if o.Commit != "" {
			job.Commit = o.Commit
		}
		job.FinishedAt = db.now()
		if job.Kind == mixmaster.KindArtifact && job.Group != "" && o.Status == mixmaster.StatusSucceeded {
			// Only a good build may seed the group's next one.
			if err := tx.Bucket(bucketGroups).Put(groupKey(job.Project, job.Group), itob(uint64(job.ID))); err != nil {
				return err
			}
		}
		return putJob(tx, job)
	})
	if err != nil {
		return nil, wrap("finish", err)
	}
	return job, nil
}

// CancelQueued moves a queued job to canceled with reason as its error and
// takes it off the queue. It returns ENOTFOUND for an unknown job and
// ECONFLICT when the job is not queued.
func (db *DB) CancelQueued(ctx context.Context, id mixmaster.JobID, reason string) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var job *mixmaster.Job
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		if job, err = getJob(tx, id); err != nil {
			return err
		}
		if job.Status != mixmaster.StatusQueued {
			return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s, not queued", id, job.Status)
		}
		if err := leaveQueue(tx, job); err != nil {
			return err
		}
		if err := setStatus(tx, job, mixmaster.StatusCanceled); err != nil {
			return err
		}
		job.Error = reason
		job.FinishedAt = db.now()
		return putJob(tx, job)
	})
	if err != nil {
		return nil, wrap("cancel", err)
	}
	return job, nil
}

// Update applies fn to a copy of a queued or running job and stores the
// result. fn runs inside the write transaction, so it must be quick and
// must not call the store. fn must not change the ID, status, project or
// delivery ID, which the store and its indexes own; the update is refused
// if it does. It returns ENOTFOUND for an unknown job and ECONFLICT for a
// finished one.
func (db *DB) Update(ctx context.Context, id mixmaster.JobID, fn func(*mixmaster.Job)) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("store: update: nil function")
	}
	var job *mixmaster.Job
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		old, err := getJob(tx, id)
		if err != nil {
			return err
		}
		if old.Status.Done() {
			return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s and can no longer change", id, old.Status)
		}
		// A second decode gives fn a deep copy to change.
		if job, err = getJob(tx, id); err != nil {
			return err
		}
		fn(job)
		switch {
		case job.ID != old.ID:
			return fmt.Errorf("job %d: update changed the id", id)
		case job.Status != old.Status:
			return fmt.Errorf("job %d: update changed the status", id)
		case job.Project != old.Project:
			return fmt.Errorf("job %d: update changed the project", id)
		case job.DeliveryID != old.DeliveryID:
			return fmt.Errorf("job %d: update changed the delivery id", id)
		case len(job.Key) > maxKeyLen:
			return mixmaster.Errorf(mixmaster.EINVALID, "job key is too long")
		}
		if job.Key != old.Key {
			if err := removeKey(tx, old.Key, itob(uint64(id))); err != nil {
				return err
			}
			if err := addKey(tx, job.Key, itob(uint64(id))); err != nil {
				return err
			}
		}
		return putJob(tx, job)
	})
	if err != nil {
		return nil, wrap("update", err)
	}
	return job, nil
}

// Recover marks every running job errored with reason and FinishedAt, and
// queues each one that was a first attempt again as a new job with
// Attempt 1, RetryOf pointing at it and Trigger retry, behind the jobs
// already queued. Queued jobs stay as they are. It returns the interrupted
// jobs, oldest first. Call it once at start-up, before any Claim.
func (db *DB) Recover(ctx context.Context, reason string) ([]*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var interrupted []*mixmaster.Job
	retried := false
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		var ids []mixmaster.JobID
		c := tx.Bucket(bucketStatuses).Bucket([]byte(mixmaster.StatusRunning)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, mixmaster.JobID(btoi(k)))
		}
		if len(ids) == 0 {
			return errNoChange
		}
		now := db.now()
		for _, id := range ids {
			job, err := getJob(tx, id)
			if err != nil {
				return err
			}
			if job.Status != mixmaster.StatusRunning {
				// An index out of step must not stop the service from
				// starting: mend it and go on.
				if err := tx.Bucket(bucketStatuses).Bucket([]byte(mixmaster.StatusRunning)).Delete(itob(uint64(id))); err != nil {
					return err
				}
				continue
			}
			if err := setStatus(tx, job, mixmaster.StatusErrored); err != nil {
				return err
			}
			job.Error = reason
			job.FinishedAt = now
			if err := putJob(tx, job); err != nil {
				return err
			}
			interrupted = append(interrupted, job)
			if job.Attempt != 0 {
				continue
			}
			retry, err := getJob(tx, id) // a fresh deep copy
			if err != nil {
				return err
			}
			retry.ID = 0
			retry.Trigger = mixmaster.TriggerRetry
			retry.Attempt = 1
			retry.RetryOf = id
			retry.DeliveryID = ""
			retry.ExitCode = nil
			retry.Error = ""
			retry.Incremental = false // decided again when the retry runs
			retry.QueuedAt = now
			retry.StartedAt = time.Time{}
			retry.FinishedAt = time.Time{}
			if err := insertJob(tx, retry); err != nil {
				return err
			}
			retried = true
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return nil, wrap("recover", err)
	}
	if retried {
		db.wake()
	}
	return interrupted, nil
}

// QueueLen returns the number of queued jobs.
func (db *DB) QueueLen(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, wrap("queue length", err)
}

// CountJobs returns the number of jobs stored, in any status.
func (db *DB) CountJobs(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketJobs).Stats().KeyN
		return nil
	})
	return n, wrap("count jobs", err)
}

// Notify returns a channel that receives a value after jobs are queued.
// The channel has a buffer of one and is shared by all callers, so one
// receiver should drain it and then claim until Claim returns nil.
func (db *DB) Notify() <-chan struct{} { return db.notify }

// getJob decodes the stored job with the given ID; the result shares no
// memory with the transaction.
func getJob(tx *bolt.Tx, id mixmaster.JobID) (*mixmaster.Job, error) {
	v := tx.Bucket(bucketJobs).Get(itob(uint64(id)))
	if v == nil {
		return nil, mixmaster.Errorf(mixmaster.ENOTFOUND, "job %d not found", id)
	}
	job, err := decodeJob(v)
	if err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return job, nil
}

// decodeJob decodes a stored job. encoding/json copies strings, so the
// result stays valid after the transaction.
func decodeJob(v []byte) (*mixmaster.Job, error) {
	job := new(mixmaster.Job)
	if err := json.Unmarshal(v, job); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return job, nil
}

// putJob writes job under its ID.
func putJob(tx *bolt.Tx, job *mixmaster.Job) error {
	data, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job %d: %w", job.ID, err)
	}
	return tx.Bucket(bucketJobs).Put(itob(uint64(job.ID)), data)
}

// enqueue appends a job ID to the queue.
func enqueue(tx *bolt.Tx, id []byte) error {
	queue := tx.Bucket(bucketQueue)
	seq, err := queue.NextSequence()
	if err != nil {
		return err
	}
	return queue.Put(itob(seq), id)
}

// setStatus moves job to next in the status index and sets job.Status;
// the caller writes the job. An empty job.Status means a job not yet
// indexed.
func setStatus(tx *bolt.Tx, job *mixmaster.Job, next mixmaster.Status) error {
	id := itob(uint64(job.ID))
	statuses := tx.Bucket(bucketStatuses)
	if job.Status != "" {
		if b := statuses.Bucket([]byte(job.Status)); b != nil {
			if err := b.Delete(id); err != nil {
				return err
			}
		}
	}
	b, err := statuses.CreateBucketIfNotExists([]byte(next))
	if err != nil {
		return fmt.Errorf("status index: %w", err)
	}
	if err := b.Put(id, nil); err != nil {
		return err
	}
	job.Status = next
	return nil
}

// leaveQueue removes a queued job's queue entry. The queue is keyed by
// position, so this looks for it; the queue is short. Claim would drop the
// entry anyway, but QueueLen must be exact at once.
func leaveQueue(tx *bolt.Tx, job *mixmaster.Job) error {
	if job.Status != mixmaster.StatusQueued {
		return nil
	}
	id := itob(uint64(job.ID))
	queue := tx.Bucket(bucketQueue)
	c := queue.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if bytes.Equal(v, id) {
			return queue.Delete(k)
		}
	}
	return nil
}

// addKey records id under the content key, if any.
func addKey(tx *bolt.Tx, key string, id []byte) error {
	if key == "" {
		return nil
	}
	b, err := tx.Bucket(bucketKeys).CreateBucketIfNotExists([]byte(key))
	if err != nil {
		return fmt.Errorf("key index: %w", err)
	}
	return b.Put(id, nil)
}

// removeKey forgets id under the content key and drops the key's bucket
// once it is empty.
func removeKey(tx *bolt.Tx, key string, id []byte) error {
	if key == "" {
		return nil
	}
	keys := tx.Bucket(bucketKeys)
	b := keys.Bucket([]byte(key))
	if b == nil {
		return nil
	}
	if err := b.Delete(id); err != nil {
		return err
	}
	if k, _ := b.Cursor().First(); k == nil {
		return keys.DeleteBucket([]byte(key))
	}
	return nil
}

// GroupHead returns the last successful artifact build of a project's
// group, or nil when the group has none.
func (db *DB) GroupHead(ctx context.Context, project, group string) (*mixmaster.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var job *mixmaster.Job
	err := db.bolt.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGroups).Get(groupKey(project, group))
		if v == nil {
			return nil
		}
		var err error
		job, err = getJob(tx, mixmaster.JobID(btoi(v)))
		return err
	})
	if err != nil {
		return nil, wrap("group head", err)
	}
	return job, nil
}

// groupKey joins project and group with a NUL, which neither may hold.
func groupKey(project, group string) []byte {
	return []byte(project + "\x00" + group)
}
