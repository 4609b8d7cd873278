package jobs

import (
	"sync"

	"mixmaster"
)

// Broker fans job events out to live viewers in memory. Events are wake-up
// signals, not data: a viewer that misses some re-reads the store and the
// log, so Publish can drop events for a slow subscriber instead of waiting.
type Broker struct {
	mu   sync.Mutex
	subs map[mixmaster.JobID]map[chan mixmaster.Event]struct{}
}

var _ mixmaster.EventService = (*Broker)(nil)

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{subs: make(map[mixmaster.JobID]map[chan mixmaster.Event]struct{})}
}

// Publish delivers e to the subscribers of its job and to those of every
// job. It never blocks.
func (b *Broker) Publish(e mixmaster.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range [2]mixmaster.JobID{e.JobID, 0} {
		for ch := range b.subs[id] {
			select {
			case ch <- e:
			default: // the subscriber already has events waiting
			}
		}
		if e.JobID == 0 {
			break
		}
	}
}

// Subscribe returns a channel of events for job id (every job when id is 0)
// and the function that ends the subscription.
func (b *Broker) Subscribe(id mixmaster.JobID) (<-chan mixmaster.Event, func()) {
	ch := make(chan mixmaster.Event, 16)
	b.mu.Lock()
	if b.subs[id] == nil {
		b.subs[id] = make(map[chan mixmaster.Event]struct{})
	}
	b.subs[id][ch] = struct{}{}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs[id], ch)
			if len(b.subs[id]) == 0 {
				delete(b.subs, id)
			}
			b.mu.Unlock()
		})
	}
}
