package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// BenchmarkOpenDashboards: 100 dashboards open on a fleet of 1,000
// devices of 40 resources (about 5.6 MB of device JSON, the fleet)
// while 2,000 status changes arrive. Each dashboard does what the
// overview does: it reads the stream and, on a notice, fetches its page of
// 100 summaries (at most once a second). It reports the server's peak
// heap, the streams refused or dropped, and the bytes each dashboard
// received (stream and pages) beside the fleet's size. One iteration is one
// whole measurement:
//
//	go test ./projections/api/ -run '^$' -bench OpenDashboards -benchtime 1x
func BenchmarkOpenDashboards(b *testing.B) {
	const dashboards, devices, changes = 100, 1000, 2000
	for range b.N {
		s := serveFleet(b, bigFleet(b, devices, 40))
		whole, _ := json.Marshal(s.svc.Devices())
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)

		ctx, cancel := context.WithCancel(context.Background())
		var received, pages, refused atomic.Int64
		var wg sync.WaitGroup
		for range dashboards {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", s.http.URL+"/api/stream", nil)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer res.Body.Close()
				if res.StatusCode != 200 {
					refused.Add(1)
					return
				}
				fetch := func() {
					r, err := http.Get(s.http.URL + "/api/summary?limit=100")
					if err != nil {
						return
					}
					n, _ := io.Copy(io.Discard, r.Body)
					r.Body.Close()
					received.Add(n)
					pages.Add(1)
				}
				fetch()
				last := time.Now()
				rd := bufio.NewReader(res.Body)
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					received.Add(int64(len(line)))
					if strings.HasPrefix(line, "event: changed") && time.Since(last) > time.Second {
						last = time.Now()
						fetch()
					}
				}
			}()
		}
		var peak atomic.Uint64
		stop := make(chan struct{})
		go func() {
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}()
		time.Sleep(time.Second) // every dashboard connected
		b.ResetTimer()
		clock, _ := events.NewClock(events.ClockState{}, func() time.Time { return time.Now().Add(time.Hour) })
		for i := range changes {
			id := s.evs[(i*42)%len(s.evs)].Device
			e, _ := events.New(id, "file-000", 1, "agent:"+id, &events.StatusChanged{Kind: events.KindFile, From: "Ready", To: "Pending", Trigger: "specChanged"})
			clock.Stamp(&e)
			if _, _, err := s.env.Store.Append(ctx, e); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(2 * time.Second) // the last notices and pages
		b.StopTimer()
		var st struct {
			Streams struct {
				Open    int    `json:"open"`
				Dropped uint64 `json:"dropped"`
			} `json:"streams"`
		}
		if r, err := http.Get(s.http.URL + "/api/status"); err == nil {
			_ = json.NewDecoder(r.Body).Decode(&st)
			r.Body.Close()
		}
		cancel()
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(len(whole))/1e6, "fleet-MB")
		b.ReportMetric(float64(base.HeapInuse)/1e6, "heap-before-MB")
		b.ReportMetric(float64(peak.Load())/1e6, "heap-peak-MB")
		b.ReportMetric(float64(refused.Load()), "refused")
		b.ReportMetric(float64(st.Streams.Open), "open-at-end")
		b.ReportMetric(float64(st.Streams.Dropped), "dropped")
		b.ReportMetric(float64(received.Load())/dashboards/1e3, "kB/dashboard")
		b.ReportMetric(float64(pages.Load())/dashboards, "pages/dashboard")
	}
}
