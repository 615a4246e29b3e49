// The pool that works on the disks of one run: every job once, never more threads than
// asked for, and the jobs really do overlap.

#include "qemu_lio/parallel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace qemu_lio {
namespace {

// Runs `jobs` jobs that each wait `wait`; returns the most that were under way at once.
int peak_overlap(size_t jobs, size_t max_threads, std::chrono::milliseconds wait,
                 std::vector<int>& runs) {
  runs.assign(jobs, 0);
  std::atomic<int> now{0}, peak{0};
  run_parallel(jobs, max_threads, [&](size_t i) {
    const int n = ++now;
    int seen = peak;
    while (n > seen && !peak.compare_exchange_weak(seen, n)) {
    }
    std::this_thread::sleep_for(wait);
    ++runs[i];  // each index is written by one job only
    --now;
  });
  return peak;
}

TEST(RunParallel, EveryJobRunsExactlyOnce) {
  std::vector<int> runs;
  peak_overlap(40, 16, std::chrono::milliseconds(1), runs);
  for (size_t i = 0; i < runs.size(); ++i) EXPECT_EQ(runs[i], 1) << "job " << i;
}

TEST(RunParallel, JobsOverlapUpToTheBound) {
  std::vector<int> runs;
  // 8 jobs of 50 ms on 4 threads: they overlap (the point of the pool), never more than 4.
  const int peak = peak_overlap(8, 4, std::chrono::milliseconds(50), runs);
  EXPECT_GE(peak, 2);
  EXPECT_LE(peak, 4);
}

TEST(RunParallel, OneThreadIsTheCallerAlone) {
  std::set<std::thread::id> ids;
  std::mutex m;
  run_parallel(5, 1, [&](size_t) {
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids, std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST(RunParallel, NoJobsNoCalls) {
  int calls = 0;
  run_parallel(0, 16, [&](size_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(RunParallel, JobsStartInIndexOrder) {
  std::vector<size_t> started;
  std::mutex m;
  run_parallel(30, 1, [&](size_t i) {
    std::lock_guard<std::mutex> lock(m);
    started.push_back(i);
  });
  for (size_t i = 0; i < started.size(); ++i) EXPECT_EQ(started[i], i);
}

}  // namespace
}  // namespace qemu_lio
