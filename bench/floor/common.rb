# frozen_string_literal: true
# (Copied unchanged from the neutral benchmark tools every library is measured with: the floor.)
# Shared helpers for the benchmark scripts (no dependency on any fiber library).
module Bench
  module_function

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Print one result line: `name: value unit`.
  def emit(name, value, unit)
    $stdout.puts format('%s: %.6g %s', name, value, unit)
    $stdout.flush
  end

  def rss_kb = File.read('/proc/self/status')[/^VmRSS:\s+(\d+)/, 1].to_i

  def percentile(sorted, pct) = sorted[[(sorted.size * pct / 100.0).ceil - 1, 0].max]

  # Listening socket with the same backlog for every implementation (Polyphony 1.6's
  # TCPServer.new listens with backlog 0, which makes 100 simultaneous connects stall
  # in SYN retransmits; Ruby's own TCPServer uses SOMAXCONN).
  def listen(port, backlog = 1024)
    require 'socket'
    s = Socket.new(:INET, :STREAM)
    s.setsockopt(:SOCKET, :REUSEADDR, true)
    s.bind(Addrinfo.tcp('127.0.0.1', port))
    s.listen(backlog)
    s
  end

  def arg(i, default) = (ARGV[i] || default).to_s.delete('_').to_i

  # Constants shared by all implementations of a workload.
  SWITCH_FIBERS = 1000
  SWITCH_YIELDS = 1000
  SPAWN_N = 100_000
  TIMER_FIBERS = 10_000
  TIMER_ROUNDS = 5
  PIPE_CHUNK = 64 * 1024
  PIPE_TOTAL = 1 << 30

  # Deterministic sleep durations (0.01..0.1 s) so every implementation gets the same set.
  def timer_durations
    rng = Random.new(42)
    Array.new(TIMER_ROUNDS) { Array.new(TIMER_FIBERS) { 0.01 + rng.rand * 0.09 } }
  end

  # overshoots: seconds each sleep exceeded its request; wall: total wall time.
  def report_timers(durations, overshoots, wall)
    ideal = durations.sum(&:max)
    s = overshoots.sort
    emit 'timers_wall', wall, 's'
    emit 'timers_excess', (wall / ideal - 1) * 100, '%'
    emit 'timers_overshoot_mean', s.sum / s.size * 1000, 'ms'
    emit 'timers_overshoot_p99', percentile(s, 99) * 1000, 'ms'
  end

  def report_memory(n, rss0, rss1)
    emit "memory_#{n >= 1000 ? "#{n / 1000}k" : n}", (rss1 - rss0).to_f / n, 'KB/fiber'
  end
end

# Minimal HTTP/1.1 request handling shared verbatim by every Ruby HTTP server.
module MiniHTTP
  BODY = 'Hello, world!'
  RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{BODY.bytesize}\r\n\r\n#{BODY}".freeze
  RESPONSE_CLOSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{BODY.bytesize}\r\nConnection: close\r\n\r\n#{BODY}".freeze

  # Consumes every complete request head in buf (mutated). Returns
  # [String of responses or nil, keep_alive].
  def self.process(buf)
    out = nil
    keep = true
    while (i = buf.index("\r\n\r\n"))
      head = buf.slice!(0, i + 4)
      _method, _path, version = head[0, head.index("\r\n")].split(' ', 3)
      keep = false if version == 'HTTP/1.0' || head.match?(/^connection:\s*close/i)
      (out ||= +'') << (keep ? RESPONSE : RESPONSE_CLOSE)
      break unless keep
    end
    [out, keep]
  end
end
