package storage

import (
	"context"
	"sync"
	"testing"
)

// Instances of a fleet started at once on an empty PostgreSQL database: one creates the
// schema, the others wait for it and open the database as it is then; none fails.
func TestConcurrentFirstOpen(t *testing.T) {
	cfg := postgresConfig(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := OpenConfig(context.Background(), cfg)
			if err == nil {
				err = d.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
}
