# frozen_string_literal: true

# The HTTP server benchmark of issue 22 (`rake bench` runs it after
# bench/run.rb; `rake bench:http` alone). In one run, interleaved, each
# server on core 0 and its load generator on core 1:
#
# - hello world, keep-alive, 100 connections (wrk): requests per server
#   CPU-second for Polyphony::HTTP's native handler API (io_uring, epoll),
#   its Rack adapter (exe/polyphony-http), puma 5.6 (one process, its
#   default threads), thin 1.8 and the raw Rust server (bench/tools/limit);
#   p99 from echo-client (HTTP=1) at 10 connections, a load every one of
#   them sustains;
# - 10,000 idle keep-alive connections: the native server's resident memory
#   per connection above an idle server;
# - 1 GiB download (a file body, spliced) and upload (the body copied to
#   /dev/null with IO.copy_stream(req, File::NULL); also with each_chunk,
#   a String per piece, shown but not the target) over one connection,
#   against a plain blocking Ruby server doing the same with IO.copy_stream
#   (curl is the client).
#
# Prints the tables and writes bench/http_results.json.

require_relative 'support'
require 'tmpdir'

SERVERS_DIR = File.join(ROOT, 'bench/servers')
LIB = File.join(ROOT, 'lib')
HELLO_RU = File.join(SERVERS_DIR, 'hello.ru')
IDLE_CONNS = QUICK ? 2000 : 10_000
BIG_MB = QUICK ? 256 : 1024
# A loopback transfer's rate moves by 20–30% from run to run (the plain
# copy's as much as the server's): the median of five.
XFER_REPS = QUICK ? 1 : 5

def hello_servers
  native = lambda { |backend|
    [[RUBY, '-I', LIB, File.join(SERVERS_DIR, 'http_native_hello.rb')], { 'POLYPHONY_BACKEND' => backend }]
  }
  servers = {}
  BACKENDS.each { |b| servers["native #{b}"] = native.call(b) }
  servers['rack adapter'] =
    [[RUBY, '-I', LIB, File.join(ROOT, 'exe/polyphony-http'), HELLO_RU, '-b', '127.0.0.1', '-p'], {}]
  servers['puma'] = [['sh', '-c', "exec puma -q -b tcp://127.0.0.1:$0 #{HELLO_RU}"], {}]
  servers['thin'] = [['sh', '-c', "exec thin -q -a 127.0.0.1 -p $0 -R #{HELLO_RU} start"], {}]
  servers['Rust'] = [[tool('limit-server'), 'http'], {}]
  servers
end

def wrk_run(port, pid)
  cpu0 = cpu_seconds(pid)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  out, = Open3.capture2('taskset', '-c', '1', 'wrk', '-t1', '-c100', "-d#{NET_SECS}s", "http://127.0.0.1:#{port}/")
  wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  rate = out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f
  cpu = (cpu_seconds(pid) - cpu0) / wall
  { rate: rate, cpu: cpu, per_cpu: rate / [cpu, 0.01].max }
end

def p99_at(port, conns)
  out, = Open3.capture2({ 'HTTP' => '1' }, 'taskset', '-c', '1', tool('echo-client'), "127.0.0.1:#{port}",
                        conns.to_s, '64', (QUICK ? 2 : 3).to_s, '1')
  parse_metrics(out)[:httpc_p99]
end

def hello
  runs = Hash.new { |h, k| h[k] = [] }
  NET_REPS.times do |i|
    hello_servers.each do |label, (cmd, env)|
      log "http hello on #{label} (#{i + 1}/#{NET_REPS})"
      runs[label] << with_server(cmd, env) do |port, pid|
        wrk_run(port, pid).merge(p99_ms: p99_at(port, 10))
      end
    end
  end
  runs.transform_values do |rs|
    rs.first.keys.to_h { |k| [k, rs.map { |r| r[k] }.sort[rs.size / 2]] }
  end
end

# Opens `count` connections, each making one request and staying open.
def idle_memory(count)
  cmd, env = hello_servers["native #{BACKENDS.first}"]
  with_server(cmd, env) do |port, pid|
    sleep 0.5
    base = rss_kb(pid)
    socks = Array.new(count) do
      s = TCPSocket.new('127.0.0.1', port)
      s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      s.readpartial(1000)
      s
    end
    sleep 1
    used = rss_kb(pid)
    socks.each(&:close)
    { conns: count, base_kb: base, kb_per_conn: (used - base).to_f / count }
  end
end

def big_file(dir)
  path = File.join(dir, 'big.bin')
  File.open(path, 'wb') do |f|
    chunk = Random.new(3).bytes(1 << 20)
    BIG_MB.times { f.write(chunk) }
  end
  path
end

# A plain blocking Ruby server (no polyphony): GET sends the file with
# IO.copy_stream (sendfile), PUT reads the body into /dev/null.
PLAIN_SERVER = <<~'RUBY'
  require 'socket'
  file = ARGV[0]
  server = TCPServer.new('127.0.0.1', Integer(ARGV[1]))
  loop do
    sock = server.accept
    head = +''
    head << sock.readpartial(4096) until head.include?("\r\n\r\n")
    if head.start_with?('GET')
      File.open(file, 'rb') do |f|
        sock.write("HTTP/1.1 200 OK\r\nContent-Length: #{f.size}\r\nConnection: close\r\n\r\n")
        IO.copy_stream(f, sock)
      end
    else
      len = head[/content-length: *(\d+)/i, 1].to_i
      rest = head.split("\r\n\r\n", 2)[1].to_s
      IO.copy_stream(sock, File::NULL, len - rest.bytesize)
      sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    end
  rescue EOFError, SystemCallError
    nil # the readiness probe, or a client gone
  ensure
    sock&.close
  end
RUBY

NATIVE_TRANSFER = <<~'RUBY'
  require 'polyphony/http'
  file = ARGV[0]
  Polyphony::HTTP.serve('127.0.0.1', Integer(ARGV[1])) do |req|
    if req.method == 'GET'
      req.serve_file(file)
    elsif req.path == '/chunks'
      req.each_chunk { |_| nil }
      req.respond('ok')
    else
      IO.copy_stream(req, File::NULL)
      req.respond('ok')
    end
  end
RUBY

# curl's --write-out variables (not Ruby format strings).
CURL_DOWN = '%{speed_download}' # rubocop:disable Style/FormatStringToken
CURL_UP = '%{speed_upload}' # rubocop:disable Style/FormatStringToken

def curl(args)
  out, = Open3.capture2('taskset', '-c', '1', 'curl', '-s', '-o', '/dev/null', '-H', 'Expect:', *args)
  out.to_f
end

def transfers(dir)
  file = big_file(dir)
  plain = File.join(dir, 'plain.rb')
  File.write(plain, PLAIN_SERVER)
  native = File.join(dir, 'native.rb')
  File.write(native, NATIVE_TRANSFER)
  servers = { 'polyphony' => [[RUBY, '-I', LIB, native, file], {}], 'plain' => [[RUBY, plain, file], {}] }
  runs = Hash.new { |h, k| h[k] = { down: [], up: [], up_chunks: [] } }
  XFER_REPS.times do
    servers.each do |label, (cmd, env)|
      log "#{BIG_MB} MiB transfers on #{label}"
      with_server(cmd, env) do |port, _pid|
        url = "http://127.0.0.1:#{port}/"
        runs[label][:down] << (curl(['-w', CURL_DOWN, url]) / 1e9)
      end
      with_server(cmd, env) do |port, _pid|
        url = "http://127.0.0.1:#{port}/"
        runs[label][:up] << (curl(['-w', CURL_UP, '-T', file, url]) / 1e9)
      end
      next unless label == 'polyphony'

      with_server(cmd, env) do |port, _pid|
        url = "http://127.0.0.1:#{port}/chunks"
        runs[label][:up_chunks] << (curl(['-w', CURL_UP, '-T', file, url]) / 1e9)
      end
    end
  end
  runs.transform_values { |r| r.transform_values { |v| v.empty? ? nil : v.sort[v.size / 2] } }
end

def ratio(ours, theirs) = theirs.to_f.positive? ? (ours / theirs).round(3) : nil

def report(hello, mem, xfer)
  h = hello
  rust = h['Rust'][:per_cpu]
  rack = h['rack adapter'][:per_cpu]
  native = h["native #{BACKENDS.first}"]
  targets = [
    ['native handler req/s per CPU-s vs Rust', '>= 0.7', ratio(native[:per_cpu], rust), ->(v) { v >= 0.7 }],
    ['Rack adapter vs puma (per CPU-s)', '>= 2.0', ratio(rack, h['puma'][:per_cpu]), ->(v) { v >= 2.0 }],
    ['Rack adapter vs thin (per CPU-s)', '>= 1.5', ratio(rack, h['thin'][:per_cpu]), ->(v) { v >= 1.5 }],
    ['native p99 at 10 conns (ms)', '<= 1', native[:p99_ms], ->(v) { v <= 1 }],
    ['Rack adapter p99 at 10 conns (ms)', '<= 1', h['rack adapter'][:p99_ms], ->(v) { v <= 1 }],
    ["KB per idle connection (#{mem[:conns]})", '<= 16', mem[:kb_per_conn].round(2), ->(v) { v <= 16 }],
    ["#{BIG_MB} MiB download vs plain copy", '>= 0.9', ratio(xfer['polyphony'][:down], xfer['plain'][:down]),
     ->(v) { v >= 0.9 }],
    ["#{BIG_MB} MiB upload vs plain copy", '>= 0.9', ratio(xfer['polyphony'][:up], xfer['plain'][:up]),
     ->(v) { v >= 0.9 }]
  ]
  puts "\nHTTP server — #{Time.now.utc.strftime('%Y-%m-%d')}, Ruby #{RUBY_VERSION}\n\n"
  puts '| target | wanted | figure | met |', '| --- | --- | --- | --- |'
  targets.each { |name, want, v, ok| puts "| #{name} | #{want} | #{v} | #{v && ok.call(v) ? 'yes' : 'NO'} |" }
  puts "\n| server | req/s (wrk, 100 conns) | server CPU | req/s per CPU-s | p99 ms at 10 conns |"
  puts '| --- | --- | --- | --- | --- |'
  h.each do |label, r|
    puts "| #{label} | #{r[:rate].round} | #{r[:cpu].round(2)} | #{r[:per_cpu].round} | #{r[:p99_ms]} |"
  end
  puts "\n| transfer (GB/s) | polyphony | plain copy |", '| --- | --- | --- |'
  puts "| download | #{xfer['polyphony'][:down].round(2)} | #{xfer['plain'][:down].round(2)} |"
  puts "| upload | #{xfer['polyphony'][:up].round(2)} | #{xfer['plain'][:up].round(2)} |"
  puts "| upload, each_chunk | #{xfer['polyphony'][:up_chunks].round(2)} | |"
end

return unless $PROGRAM_NAME == __FILE__

build_tools
results = Dir.mktmpdir('polyphony-bench-http') do |dir|
  { hello: hello, idle: idle_memory(IDLE_CONNS), transfers: transfers(dir) }
end
File.write(File.join(ROOT, 'bench/http_results.json'),
           JSON.pretty_generate(results.merge(date: Time.now.utc.to_s, quick: QUICK)))
report(results[:hello], results[:idle], results[:transfers])
