// The Go peer of ct-demo for the HTTP benchmarks (bench/http/run.sh): net/http from the
// standard library, the same endpoints and the same trace.
//
//	go build -o build-bench/bench/http/go-server bench/http/go/server.go
//	GO_TRACE=/tmp/trace ./go-server -listen 127.0.0.1:18082
//
//	GET /healthz                         {"status":"ok"}, as ct-demo answers it
//	GET /work?ms=N&mode=io|cpu&traceId=K     io: select on r.Context().Done() and a timer;
//	                                     cpu: 10 ms CPU steps, ctx.Err() checked between them
//	GET /metrics                         go_http_requests_in_flight (/work and /metrics
//	                                     requests, the scrape included, as ct counts it)
//
// With GO_TRACE=<file> every /work request appends "<id> <token fired ns> <handler returned ns>
// <result>" (CLOCK_MONOTONIC; result 0 or -125, ECANCELED), like ct-demo's CT_DEMO_TRACE. "Token
// fired" is the moment a goroutine started for that purpose sees ctx.Done() close; 0 if it did
// not close before the handler returned.
//
// A CPU step is 10 ms of CPU. ct-demo spins on its thread's CPU clock; a goroutine moves between
// threads, so by default (-cpu-step loop) a step here is a fixed amount of work measured once at
// start-up to take 10 ms of thread CPU time (the goroutine locked to its thread while measuring).
// -cpu-step clock does what ct-demo does instead: the goroutine locked to its thread for the
// whole request, spinning on CLOCK_THREAD_CPUTIME_ID (one system call per check, as in C), at
// the price of a thread per CPU-bound request and slower goroutine switches.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	clockMonotonic     = 1 // CLOCK_MONOTONIC, the clock the C clients read
	clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID, what ct-demo's cpu mode measures
	eCanceled          = -125
)

var (
	stepClock bool  // -cpu-step clock
	stepIters int64 // -cpu-step loop: iterations of spin() in 10 ms of CPU
	sink      uint64
	traceFile *os.File
	inFlight  int64
	workTotal int64
	canceled  int64
)

func clockNs(clock uintptr) int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clock, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

func healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"status":"ok"}`))
}

func metrics(w http.ResponseWriter, r *http.Request) {
	atomic.AddInt64(&inFlight, 1)
	defer atomic.AddInt64(&inFlight, -1)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "go_http_requests_in_flight %d\ngo_http_work_total %d\n"+
		"go_http_work_canceled_total %d\ngo_goroutines %d\n",
		atomic.LoadInt64(&inFlight), atomic.LoadInt64(&workTotal),
		atomic.LoadInt64(&canceled), runtime.NumGoroutine())
}

func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, bool) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, true
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v >= lo && v <= hi
}

// n rounds of a xorshift: work the compiler cannot drop.
func spin(n int64) {
	x := sink | 1
	for i := int64(0); i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	atomic.StoreUint64(&sink, x)
}

// How many rounds of spin() take 10 ms of this thread's CPU: the median of 7 measurements.
func calibrate() int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const probe = 1000000
	var per [7]int64
	for i := range per {
		t0 := clockNs(clockThreadCPUTime)
		spin(probe)
		per[i] = clockNs(clockThreadCPUTime) - t0
	}
	for i := range per { // insertion sort
		for j := i; j > 0 && per[j] < per[j-1]; j-- {
			per[j], per[j-1] = per[j-1], per[j]
		}
	}
	return probe * 10000000 / per[len(per)/2]
}

// The work itself; returns 0 or eCanceled.
func workBody(ctx context.Context, mode string, ms int64) int {
	if mode == "cpu" && !stepClock {
		for done := int64(0); done < ms; done += 10 {
			if ctx.Err() != nil {
				return eCanceled
			}
			spin(stepIters)
		}
		return 0
	}
	if mode == "cpu" {
		// A goroutine may move between threads; locked to one, its thread's CPU clock is its
		// own, as a ct pool thread's is.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for done := int64(0); done < ms; done += 10 {
			if ctx.Err() != nil {
				return eCanceled
			}
			t0 := clockNs(clockThreadCPUTime)
			for clockNs(clockThreadCPUTime)-t0 < 10000000 {
			}
		}
		return 0
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return eCanceled
	case <-t.C:
		return 0
	}
}

func work(w http.ResponseWriter, r *http.Request) {
	atomic.AddInt64(&inFlight, 1)
	defer atomic.AddInt64(&inFlight, -1)
	atomic.AddInt64(&workTotal, 1)
	ms, ok1 := queryInt(r, "ms", 1000, 0, 600000)
	id, ok2 := queryInt(r, "traceId", 0, 0, 1<<62)
	mode := r.URL.Query().Get("mode")
	if !ok1 || !ok2 || (mode != "" && mode != "io" && mode != "cpu") {
		http.Error(w, `{"error":"invalid_parameter"}`, http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	var fired chan int64
	finished := make(chan struct{})
	if traceFile != nil {
		fired = make(chan int64, 1)
		go func() {
			select {
			case <-ctx.Done():
				fired <- clockNs(clockMonotonic)
			case <-finished:
				fired <- 0
			}
		}()
	}
	rc := workBody(ctx, mode, ms)
	returned := clockNs(clockMonotonic)
	if rc == 0 {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("done\n"))
	} else {
		atomic.AddInt64(&canceled, 1)
	}
	if traceFile != nil {
		// A canceled handler saw ctx.Done() closed: leave `finished` open so that the watcher
		// takes the ctx.Done() branch (select picks at random among ready cases).
		if rc == 0 {
			close(finished)
		}
		f := <-fired
		traceFile.Write([]byte(fmt.Sprintf("%d %d %d %d\n", id, f, returned, rc)))
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8082", "address to listen on")
	step := flag.String("cpu-step", "loop", "a CPU step: loop (calibrated work) or clock")
	flag.Parse()
	if *step != "loop" && *step != "clock" {
		log.Fatalf("go-server: -cpu-step must be loop or clock")
	}
	stepClock = *step == "clock"
	stepIters = calibrate()
	if p := os.Getenv("GO_TRACE"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0644)
		if err != nil {
			log.Fatalf("go-server: cannot open GO_TRACE %s: %v", p, err)
		}
		traceFile = f
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/work", work)
	mux.HandleFunc("/metrics", metrics)
	srv := &http.Server{Addr: *listen, Handler: mux}
	log.Printf("go-server: listening on http://%s (GOMAXPROCS %d, cpu step %s, %d rounds per "+
		"10 ms)", *listen, runtime.GOMAXPROCS(0), *step, stepIters)
	log.Fatal(srv.ListenAndServe())
}
