// Package store keeps jobs and the job queue in one bbolt file and
// implements mixmaster.JobStore. Every exported method runs exactly one
// bbolt transaction, and every write transaction is fsynced before the
// method returns, so a job that CreateJob returned survives a crash.
//
// The bucket tree, schema version 1. Keys shown as <…:be64> are 8-byte
// big-endian integers, so cursor order is numeric order and, for job IDs,
// creation order.
//
//	meta/
//	  schema_version → "1"                 decimal text
//	jobs/                                   bucket sequence = last job ID
//	  <id:be64> → mixmaster.Job as JSON
//	queue/                                  bucket sequence = last position
//	  <seq:be64> → <id:be64>                durable FIFO of queued jobs
//	statuses/
//	  <status>/                             one per mixmaster.Statuses entry
//	    <id:be64> → ""                      jobs now in that status
//	project_jobs/
//	  <project>/
//	    <id:be64> → ""                      every job of one project
//	deliveries/
//	  <delivery id> → <id:be64>             webhook deliveries already accepted
//	keys/
//	  <key>/
//	    <id:be64> → ""                      jobs by content key (Job.Key)
//	groups/
//	  <project> NUL <group> → <id:be64>     last successful artifact build
//
// The job record in jobs/ is the truth; every other bucket is an index that
// the same transaction keeps in step with it. The in-memory channel from
// Notify only wakes the runner: the queue bucket is the queue of record.
//
// When the layout or the encoding of any value changes, update this
// diagram, increment SchemaVersion and add an entry to migrations that
// upgrades a file of the previous version in place. Open refuses files
// whose version is newer than SchemaVersion, so an old binary never
// misreads a new file.
//
// Open reads the whole file once before the store is used: bbolt trusts
// its pages, and a file cut short or overwritten would make it panic, or
// fault on a page the file does not hold, at some later read. Such a file
// is refused with an error wrapping ErrDamaged, one line naming the file
// and how to restore a backup. One damaged header page is not damage:
// bbolt keeps two so that a torn write of one is survived, and the first
// commit writes it afresh. A new file is made whole under a temporary
// name and linked into place, so an empty file is never a store still
// being created, and is refused too.
//
// bbolt allows one writer at a time and takes an exclusive lock on the file,
// so only one process can have the store open; Open fails after
// Options.Timeout with ErrLocked instead of waiting forever.
package store
