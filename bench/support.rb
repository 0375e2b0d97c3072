# frozen_string_literal: true

# What the benchmark runners (bench/run.rb, bench/http.rb) share: paths,
# sizes, the tools, and starting a server on core 0.

require 'json'
require 'open3'
require 'rbconfig'
require 'socket'

ROOT = File.expand_path('..', __dir__)
RUBY = File.join(RbConfig::CONFIG['bindir'], RbConfig::CONFIG['ruby_install_name'])
QUICK = ENV['QUICK'] == '1'
TOOLS = File.join(ROOT, 'bench/tools')
TOOLS_TARGET = File.join(TOOLS, 'target')
NET_SECS = QUICK ? 2 : 5
# Network runs per server, interleaved (the median is reported).
NET_REPS = QUICK ? 1 : 3
# Runs of the switch, spawn and pipe workloads per implementation,
# interleaved (the median of each figure is reported): a single run on this
# kind of shared machine was seen 45% off.
MICRO_REPS = QUICK ? 1 : 3
SIZES =
  if QUICK
    { 'SWITCH_FIBERS' => 1000, 'SWITCH_ROUNDS' => 100, 'SPAWN_TOTAL' => 20_000, 'SPAWN_BATCHES' => 20,
      'MEMORY_SMALL' => 10_000, 'MEMORY_LARGE' => 20_000, 'TIMER_FIBERS' => 2000, 'TIMER_ROUNDS' => 2,
      'PIPE_MB' => 256 }
  else
    {}
  end

# io_uring may be disabled (kernel.io_uring_disabled, seccomp, old kernel):
# its column then says n/a.
IO_URING = begin
  out, = Open3.capture2e({ 'POLYPHONY_BACKEND' => nil }, RUBY, '-I', File.join(ROOT, 'lib'), '-e',
                         'require "polyphony"; print Thread.current.backend.kind')
  out.strip == 'io_uring'
end
BACKENDS = IO_URING ? %w[io_uring epoll] : %w[epoll]

def log(msg)
  warn "bench: #{msg}"
end

def build_tools
  %w[echo-client limit].each do |tool|
    cmd = ['cargo', 'build', '--release', '-q', '--manifest-path', File.join(TOOLS, tool, 'Cargo.toml')]
    system({ 'CARGO_TARGET_DIR' => TOOLS_TARGET }, *cmd, exception: true)
  end
end

def tool(name)
  File.join(TOOLS_TARGET, 'release', name)
end

def free_port
  s = TCPServer.new('127.0.0.1', 0)
  s.addr[1]
ensure
  s&.close
end

# CPU seconds (user + system) used so far by process `pid`.
def cpu_seconds(pid)
  fields = File.read("/proc/#{pid}/stat").split(') ').last.split
  (fields[11].to_i + fields[12].to_i) / 100.0
end

# Resident memory of process `pid`, in KB.
def rss_kb(pid)
  File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
end

# Starts a server on core 0 (`cmd` gets the port), waits until it accepts.
def with_server(cmd, env = {})
  port = free_port
  pid = Process.spawn(env, 'taskset', '-c', '0', *cmd, port.to_s, out: File::NULL, err: File::NULL)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 15
  begin
    TCPSocket.new('127.0.0.1', port).close
  rescue SystemCallError
    raise "server #{cmd.join(' ')} did not start" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

    sleep 0.05
    retry
  end
  yield port, pid
ensure
  if pid
    Process.kill('KILL', pid)
    Process.wait(pid)
  end
end

def parse_metrics(text)
  text.scan(/^(\w+): ([\d.]+)/).to_h { |k, v| [k.to_sym, v.to_f] }
end
