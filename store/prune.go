package store

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"

	"mixmaster"
)

// DeleteJob removes a finished job and every index entry that names it
// (project_jobs, statuses, keys, its delivery) in one durable transaction.
// It returns ENOTFOUND for an unknown job and ECONFLICT for a job that is
// queued or running, since the runner still owns it, or that is the head
// of its group, since the group's next build starts from it.
//
// Deliveries carry no time of their own, only the job they created, so
// they are forgotten with their job rather than by age: a redelivery of a
// pruned job's delivery queues a new job.
func (db *DB) DeleteJob(ctx context.Context, id mixmaster.JobID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		job, err := getJob(tx, id)
		if err != nil {
			return err
		}
		if !job.Status.Done() {
			return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is %s and cannot be deleted", id, job.Status)
		}
		key := itob(uint64(id))
		if job.Group != "" && bytes.Equal(tx.Bucket(bucketGroups).Get(groupKey(job.Project, job.Group)), key) {
			return mixmaster.Errorf(mixmaster.ECONFLICT, "job %d is the last good build of group %s and cannot be deleted", id, job.Group)
		}
		if err := tx.Bucket(bucketJobs).Delete(key); err != nil {
			return err
		}
		if b := tx.Bucket(bucketStatuses).Bucket([]byte(job.Status)); b != nil {
			if err := b.Delete(key); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketProjectJobs).Bucket([]byte(job.Project)); b != nil {
			if err := b.Delete(key); err != nil {
				return err
			}
		}
		if job.DeliveryID != "" {
			// Only if it still points here: the entry is the first job's.
			deliveries := tx.Bucket(bucketDeliveries)
			if bytes.Equal(deliveries.Get([]byte(job.DeliveryID)), key) {
				if err := deliveries.Delete([]byte(job.DeliveryID)); err != nil {
					return err
				}
			}
		}
		return removeKey(tx, job.Key, key)
	})
	return wrap("delete job", err)
}
