# frozen_string_literal: true

# One micro-benchmark per run, in a fresh process:
#   ruby -Ilib bench/workloads.rb IMPL NAME
# IMPL is `polyphony` (the gem, on POLYPHONY_BACKEND) or `bare` (plain Ruby
# fibers: the denominator). Prints one JSON object. Sizes come from the
# environment (bench/run.rb sets them; QUICK=1 makes them small).

require 'json'

IMPL = ARGV.fetch(0)
NAME = ARGV.fetch(1)
POLY = IMPL == 'polyphony'
require 'polyphony' if POLY

def env(name, default)
  Integer(ENV.fetch(name, default.to_s))
end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

def timed
  t = now
  yield
  now - t
end

def rss_kb
  File.read('/proc/self/status')[/VmRSS:\s+(\d+)/, 1].to_i
end

# N fibers × M switches each.
def switch
  n = env('SWITCH_FIBERS', 1000)
  m = env('SWITCH_ROUNDS', 1000)
  if POLY
    fibers = n.times.map { spin { m.times { snooze } } }
    elapsed = timed { Fiber.await(fibers) }
  else
    fibers = n.times.map { Fiber.new { m.times { Fiber.yield } } }
    elapsed = timed { (m + 1).times { fibers.each(&:resume) } }
  end
  { switches_per_s: n * m / elapsed }
end

# Fibers created, run to completion and awaited: all at once, and in batches.
def spawn
  total = env('SPAWN_TOTAL', 100_000)
  batch = env('SPAWN_BATCH', 1000)
  batches = env('SPAWN_BATCHES', 100)
  run = lambda do |count|
    if POLY
      Fiber.await(count.times.map { spin { nil } })
    else
      count.times.map { Fiber.new { nil } }.each(&:resume)
    end
  end
  GC.start
  once = timed { run.call(total) }
  GC.start
  batched = timed { batches.times { run.call(batch) } }
  { spawn_per_s: total / once, batch_per_s: batch * batches / batched }
end

# RSS per fiber parked in a wait (polyphony: `suspend`; bare: Fiber.yield).
def memory
  out = {}
  [env('MEMORY_SMALL', 10_000), env('MEMORY_LARGE', 100_000)].each do |n|
    GC.start
    GC.disable
    before = rss_kb
    if POLY
      fibers = n.times.map { spin { suspend } }
      snooze
    else
      fibers = n.times.map { Fiber.new { Fiber.yield } }
      fibers.each(&:resume)
    end
    out[:"kb_per_fiber_#{n}"] = (rss_kb - before).fdiv(n)
    GC.enable
    if POLY
      fibers.each(&:stop)
      Fiber.await(fibers)
    else
      fibers.each(&:resume)
    end
  end
  out
end

# 10k fibers, spun together, each sleeping 0.01–0.1 s in several rounds
# (the floor's durations: Random.new(42), round by round): how late they
# wake. Round 1 starts 10k fibers at once, the hard part for timers.
def timers
  n = env('TIMER_FIBERS', 10_000)
  rounds = env('TIMER_ROUNDS', 5)
  rng = Random.new(42)
  durations = Array.new(rounds) { Array.new(n) { 0.01 + (rng.rand * 0.09) } }
  late = []
  fibers = n.times.map do |i|
    spin do
      rounds.times do |round|
        d = durations[round][i]
        t = now
        sleep d
        late << (now - t - d)
      end
    end
  end
  Fiber.await(fibers)
  late.sort!
  { overshoot_mean_ms: late.sum / late.size * 1000, overshoot_p99_ms: late[(late.size * 0.99).floor] * 1000 }
end

# Items handed from a plain thread to a consumer: a Polyphony::Queue read by
# a fiber (polyphony), stdlib Thread::Queue read by a thread (bare, the
# floor). Throughput: XQUEUE_ITEMS pushed as fast as they go. Wake-up
# latency: XQUEUE_PINGS items each pushed to an idle consumer (the producer
# waits for an acknowledgement before the next).
def xqueue
  n = env('XQUEUE_ITEMS', 100_000)
  pings = env('XQUEUE_PINGS', 10_000)
  q = POLY ? Polyphony::Queue.new : Thread::Queue.new
  consume = lambda do |count, &blk|
    POLY ? spin { count.times { blk.call(q.shift) } } : Thread.new { count.times { blk.call(q.pop) } }
  end
  finish = ->(c) { POLY ? c.await : c.join }
  elapsed = timed do
    consumer = consume.call(n) { |_| nil }
    producer = Thread.new { n.times { |i| q << i } }
    finish.call(consumer)
    producer.join
  end
  lat = []
  ack = Thread::Queue.new
  consumer = consume.call(pings) do |t|
    lat << (now - t)
    ack << true
  end
  producer = Thread.new do
    pings.times do
      q << now
      ack.pop
    end
  end
  finish.call(consumer)
  producer.join
  lat.sort!
  { items_per_s: n / elapsed, wake_p50_us: lat[lat.size / 2] * 1e6, wake_p99_us: lat[(lat.size * 0.99).floor] * 1e6 }
end

# Bytes through an IO.pipe from a writer fiber to a reader fiber.
def pipe
  total = env('PIPE_MB', 1024) * 1024 * 1024
  chunk = 'x' * 65_536
  r, w = IO.pipe
  got = 0
  elapsed = timed do
    if POLY
      pipe_polyphony(r, w, chunk, total) { |n| got += n }
    else
      pipe_bare(r, w, chunk, total) do |n|
        got += n
      end
    end
  end
  raise "pipe: got #{got} of #{total} bytes" unless got == total

  { gb_per_s: total / elapsed / 1e9 }
end

def pipe_polyphony(reader, writer, chunk, total)
  w = spin do
    (total / chunk.bytesize).times { writer.write(chunk) }
    writer.close
  end
  buf = +''
  r = spin { yield buf.bytesize while reader.readpartial(65_536, buf, 0, false) }
  Fiber.await(w, r)
end

def pipe_bare(reader, writer, chunk, total)
  w = Fiber.new do
    (total / chunk.bytesize).times do
      rest = chunk
      until rest.empty?
        n = writer.write_nonblock(rest, exception: false)
        n == :wait_writable ? Fiber.yield : rest = rest.byteslice(n..)
      end
    end
    writer.close
  end
  buf = +''
  r = Fiber.new do
    loop do
      case reader.read_nonblock(65_536, buf, exception: false)
      when :wait_readable then Fiber.yield
      when nil then break
      else yield buf.bytesize
      end
    end
  end
  while w.alive? || r.alive?
    w.resume if w.alive?
    r.resume if r.alive?
  end
end

puts JSON.generate({ impl: IMPL, name: NAME }.merge(send(NAME)))
