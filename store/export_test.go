package store

import (
	bolt "go.etcd.io/bbolt"

	"mixmaster"
)

// ImportForTest stores jobs in one transaction, keeping each job's status
// and indexes as the exported methods would, so that tests and benchmarks
// can build large fixtures quickly. IDs are assigned in order.
func (db *DB) ImportForTest(jobs []*mixmaster.Job) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		for _, job := range jobs {
			status := job.Status
			if err := insertJob(tx, job); err != nil {
				return err
			}
			if status == "" || status == mixmaster.StatusQueued {
				continue
			}
			if err := leaveQueue(tx, job); err != nil {
				return err
			}
			if err := setStatus(tx, job, status); err != nil {
				return err
			}
			if err := putJob(tx, job); err != nil {
				return err
			}
		}
		return nil
	})
}

// EnqueueForTest appends id to the queue whatever the job's status, to
// simulate an entry left behind.
func (db *DB) EnqueueForTest(id mixmaster.JobID) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		return enqueue(tx, itob(uint64(id)))
	})
}
