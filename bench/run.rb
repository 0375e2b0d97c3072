# frozen_string_literal: true

# The benchmark suite (`rake bench`; `QUICK=1 rake bench` for a short run).
#
# Every workload runs in a fresh process, for the gem on io_uring and on
# epoll, and for its denominator in the same invocation, interleaved: the
# floor (bench/floor/: the cheapest way bare Ruby does the same work) for
# switch/spawn/memory/pipe, stdlib Thread::Queue between two threads for the
# cross-thread queue, the raw Rust server (bench/tools/limit) for echo/http,
# which the gem serves with the reference servers every library is compared
# with (bench/servers/reference_*). The former denominators (bare Ruby in
# the gem's own shapes) and the gem's leaner servers stay as extra rows.
# Servers run on core 0, the load generators (bench/tools/echo-client, wrk)
# on core 1. Prints the targets table and the figures, and writes them as
# JSON to bench/results.json.

require_relative 'support'

# 100k simultaneous fibers need two memory maps each (stack and guard
# page), beyond the default vm.max_map_count (65530), for bare Ruby fibers
# as for ours. Raised for the run when we may (restored at exit); else the
# large memory figure uses as many fibers as fit.
MAP_COUNT = '/proc/sys/vm/max_map_count'
def fit_memory_fibers(wanted)
  current = File.read(MAP_COUNT).to_i
  need = (wanted * 2) + 30_000
  return wanted if current >= need

  begin
    File.write(MAP_COUNT, need.to_s)
    at_exit { File.write(MAP_COUNT, current.to_s) }
    return wanted
  rescue SystemCallError
    nil
  end
  fit = ((current - 30_000) / 2 / 10_000) * 10_000
  warn "bench: vm.max_map_count is #{current}: the memory figure uses #{fit} fibers, not #{wanted}"
  fit
end

def run_workload(impl, name, backend)
  env = SIZES.transform_values(&:to_s).merge('POLYPHONY_BACKEND' => backend)
  out, err, status = Open3.capture3(env, 'taskset', '-c', '0', RUBY, '-I', File.join(ROOT, 'lib'),
                                    File.join(ROOT, 'bench/workloads.rb'), impl, name)
  raise "#{impl} #{name} failed: #{err}" unless status.success?

  JSON.parse(out.lines.last, symbolize_names: true)
end

# A floor script (bench/floor/NAME.rb ARGS) on core 0: its `name: value`
# lines.
def run_floor(name, *args)
  out, err, status = Open3.capture3('taskset', '-c', '0', RUBY, File.join(ROOT, "bench/floor/#{name}.rb"),
                                    *args.map(&:to_s))
  raise "floor #{name} failed: #{err}" unless status.success?

  out.scan(/^(\w+): ([\d.e+-]+)/).to_h { |k, v| [k.to_sym, v.to_f] }
end

# The floor's figures under the names the gem's workloads use.
def floor_figures(name)
  case name
  when 'switch' then { switches_per_s: run_floor('switch')[:switch] }
  when 'spawn'
    f = run_floor('spawn')
    { spawn_per_s: f[:spawn], batch_per_s: f[:spawn_b1k] }
  when 'pipe' then { gb_per_s: run_floor('pipe')[:pipe] }
  when 'memory'
    [SIZES.fetch('MEMORY_SMALL', 10_000), SIZES.fetch('MEMORY_LARGE', 100_000)].to_h do |n|
      [:"kb_per_fiber_#{n}", run_floor('memory', n).values.first]
    end
  end
end

# Closed-loop client on core 1; the server's CPU seconds over the run.
def drive(port, pid, http:)
  cpu0 = cpu_seconds(pid)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  env = http ? { 'HTTP' => '1' } : {}
  out, = Open3.capture2(env, 'taskset', '-c', '1', tool('echo-client'), "127.0.0.1:#{port}", '100', '64',
                        NET_SECS.to_s, '1')
  wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  m = parse_metrics(out)
  prefix = http ? 'httpc' : 'echo'
  { rate: m[prefix.to_sym], p99_ms: m[:"#{prefix}_p99"], fair: m[:"#{prefix}_fair"],
    cpu: (cpu_seconds(pid) - cpu0) / wall }
end

def wrk(port, pid)
  return {} unless system('which wrk > /dev/null 2>&1')

  cpu0 = cpu_seconds(pid)
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  out, = Open3.capture2('taskset', '-c', '1', 'wrk', '-t1', '-c100', "-d#{NET_SECS}s", "http://127.0.0.1:#{port}/")
  wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  { wrk_rate: out[%r{Requests/sec:\s+([\d.]+)}, 1].to_f, wrk_cpu: (cpu_seconds(pid) - cpu0) / wall }
end

def network(kind)
  http = kind == 'http'
  ours = lambda do |script, backend|
    [[RUBY, '-I', File.join(ROOT, 'lib'), File.join(ROOT, "bench/servers/#{script}")],
     { 'POLYPHONY_BACKEND' => backend }]
  end
  servers = {
    'io_uring' => ours.call("reference_#{kind}_server.rb", 'io_uring'),
    'epoll' => ours.call("reference_#{kind}_server.rb", 'epoll'),
    'reference' => [[tool('limit-server'), kind], {}],
    'lean' => ours.call("#{kind}_server.rb", IO_URING ? 'io_uring' : 'epoll')
  }
  servers.delete('io_uring') unless IO_URING
  runs = Hash.new { |h, k| h[k] = [] }
  NET_REPS.times do |i|
    servers.each do |label, (cmd, env)|
      log "#{kind} on #{label} (#{i + 1}/#{NET_REPS})"
      runs[label] << with_server(cmd, env) do |port, pid|
        drive(port, pid, http: http).merge(http ? wrk(port, pid) : {})
      end
    end
  end
  runs.transform_values { |rs| median_run(rs) }
end

# The run with the median rate per server CPU-second: on a shared machine
# one run can be off by 20% either way (the reference server's too). Its
# p99 is replaced by the median p99 of the runs (a latency tail is the
# figure a noisy moment moves most); every run's p99 is kept in `p99_runs`.
def median_run(runs)
  run = runs.sort_by { |r| r[:rate] / [r[:cpu], 0.01].max }[runs.size / 2]
  p99s = runs.map { |r| r[:p99_ms] }
  run.merge(p99_ms: p99s.sort[runs.size / 2], p99_runs: p99s)
end

# One result whose every numeric figure is the median of `runs`' figures.
def median_figures(runs)
  runs.first.to_h do |k, v|
    next [k, v] unless v.is_a?(Numeric)

    [k, runs.map { |r| r[k] }.sort[runs.size / 2]]
  end
end

def micro
  SIZES['MEMORY_LARGE'] = fit_memory_fibers(SIZES.fetch('MEMORY_LARGE', 100_000))
  results = {}
  %w[switch spawn memory pipe].each do |name|
    log name
    reps = name == 'memory' ? 1 : MICRO_REPS
    runs = Hash.new { |h, k| h[k] = [] }
    reps.times do
      BACKENDS.each { |b| runs[b] << run_workload('polyphony', name, b) }
      runs['floor'] << floor_figures(name)
      runs['bare'] << run_workload('bare', name, 'epoll')
    end
    results[name] = runs.transform_values { |rs| median_figures(rs) }
  end
  log 'timers'
  results['timers'] = BACKENDS.to_h { |b| [b, run_workload('polyphony', 'timers', b)] }
  log 'cross-thread queue'
  runs = Hash.new { |h, k| h[k] = [] }
  MICRO_REPS.times do
    BACKENDS.each { |b| runs[b] << run_workload('polyphony', 'xqueue', b) }
    runs['bare'] << run_workload('bare', 'xqueue', 'epoll')
  end
  results['xqueue'] = runs.transform_values { |rs| median_figures(rs) }
  results
end

# Rows: [label, target text, io_uring value, epoll value, ok?]; the targets
# of issue 21 first, then the former targets' denominators, labelled.
def rows(m, net)
  both = ->(&blk) { %w[io_uring epoll].map { |b| blk.call(b) } }
  per_cpu = ->(r) { r && (r[:rate] / [r[:cpu], 0.01].max) }
  ratio = ->(w, key, den = 'floor') { both.call { |b| m[w][b] && (m[w][b][key] / m[w][den][key]) } }
  mem = ->(key) { both.call { |b| m['memory'][b] && (m['memory'][b][key] - m['memory']['floor'][key]) } }
  net_ratio = lambda do |kind|
    ref = per_cpu.call(net[kind]['reference'])
    both.call { |b| net[kind][b] && (per_cpu.call(net[kind][b]) / ref) }
  end
  lean_ratio = lambda do |kind|
    [per_cpu.call(net[kind]['lean']) / per_cpu.call(net[kind]['reference']), nil]
  end
  pick = ->(h, key) { both.call { |b| h[b]&.fetch(key) } }
  large = m['memory']['floor'].keys.grep(/kb_per_fiber_/).max_by { |k| k.to_s[/\d+/].to_i }
  [
    ['switch vs transfer ring (floor)', '>= 0.90', *ratio.call('switch', :switches_per_s), ->(v) { v >= 0.90 }],
    ['spawn 100k then await vs floor', '>= 1.0', *ratio.call('spawn', :spawn_per_s), ->(v) { v >= 1.0 }],
    ['spawn 1k batches vs floor', '>= 1.0', *ratio.call('spawn', :batch_per_s), ->(v) { v >= 1.0 }],
    ['timer overshoot p99 (ms), 10k fibers spun at once', '<= 1', *pick.call(m['timers'], :overshoot_p99_ms),
     ->(v) { v <= 1 }],
    ["memory/idle fiber - floor (KB, #{large.to_s[/\d+/]})", '<= 0.3', *mem.call(large), ->(v) { v <= 0.3 }],
    ['pipe vs one thread alternating (floor)', '>= 0.97', *ratio.call('pipe', :gb_per_s), ->(v) { v >= 0.97 }],
    ['echo msg/s per CPU-s vs Rust (reference server)', '>= 1.0', *net_ratio.call('echo'), ->(v) { v >= 1.0 }],
    ['HTTP req/s per CPU-s vs Rust (reference server)', '>= 0.80', *net_ratio.call('http'), ->(v) { v >= 0.80 }],
    ['HTTP p99 at 100 conns (ms, reference server)', '<= 0.8', *pick.call(net['http'], :p99_ms), ->(v) { v <= 0.8 }],
    ['cross-thread queue vs Thread::Queue', '>= 0.8', *ratio.call('xqueue', :items_per_s, 'bare'),
     ->(v) { v >= 0.8 }],
    ['cross-thread wake-up p99 (µs)', '<= 50', *pick.call(m['xqueue'], :wake_p99_us), ->(v) { v <= 50 }],
    ['(former) switch vs resume/yield bare', '>= 0.80', *ratio.call('switch', :switches_per_s, 'bare'),
     ->(v) { v >= 0.80 }],
    ['(former) pipe vs two bare fibers', '>= 0.97', *ratio.call('pipe', :gb_per_s, 'bare'), ->(v) { v >= 0.97 }],
    ['(former) echo per CPU-s vs Rust, lean server (io_uring only)', '>= 0.95', *lean_ratio.call('echo'),
     ->(v) { v >= 0.95 }],
    ['(former) HTTP per CPU-s vs Rust, lean server (io_uring only)', '>= 0.85', *lean_ratio.call('http'),
     ->(v) { v >= 0.85 }]
  ].map { |label, target, u, e, ok| [label, target, u, e, u.nil? ? nil : ok.call(u)] }
end

def fmt(v)
  return 'n/a' if v.nil?
  return v.map { |x| fmt(x) }.join(' / ') if v.is_a?(Array)

  v.abs >= 100 ? format('%.0f', v) : format('%.3g', v)
end

def met(flag)
  { true => 'yes', false => 'NO', nil => 'n/a' }[flag]
end

# bench/results.svg: each target as a bar of "how far to the target" (1.0 =
# just met; above is better), io_uring and epoll side by side.
def write_chart(m, net, path)
  scored = rows(m, net).map do |label, target, u, e, _|
    want = target[/[\d.]+/].to_f
    score = ->(v) { v && (target.start_with?('>=') ? v / want : want / [v, 1e-9].max) }
    [label, score.call(u), score.call(e)]
  end
  bar_w = 300
  row_h = 34
  scale = ->(x) { [x.to_f, 2.0].min / 2.0 * bar_w }
  height = (scored.size * row_h) + 50
  head = %(<svg xmlns="http://www.w3.org/2000/svg" width="640" height="#{height}" font-family="sans-serif")
  svg = [%(#{head} font-size="12">),
         %(<text x="10" y="18" font-weight="bold">polyphony vs its targets (1.0 = target met; capped at 2)</text>)]
  scored.each_with_index do |(label, u, e), i|
    y = 30 + (i * row_h)
    svg << %(<text x="10" y="#{y + 14}">#{label.gsub('&', '&amp;').gsub('<', '&lt;').gsub('>', '&gt;')}</text>)
    [[u, '#3b6ea5', 0], [e, '#9bbbe0', 13]].each do |v, color, dy|
      next unless v

      svg << %(<rect x="300" y="#{y + dy}" width="#{scale.call(v).round(1)}" height="11" fill="#{color}"/>)
      svg << %(<text x="#{305 + scale.call(v)}" y="#{y + dy + 10}">#{format('%.2f', v)}</text>)
    end
    svg << %(<line x1="#{300 + (bar_w / 2)}" y1="#{y - 2}" x2="#{300 + (bar_w / 2)}" y2="#{y + 26}" stroke="#c33"/>)
  end
  legend_y = 40 + (scored.size * row_h)
  svg << (%(<rect x="300" y="#{legend_y - 9}" width="10" height="10" fill="#3b6ea5"/>) +
         %(<text x="314" y="#{legend_y}">io_uring</text>))
  svg << (%(<rect x="380" y="#{legend_y - 9}" width="10" height="10" fill="#9bbbe0"/>) +
         %(<text x="394" y="#{legend_y}">epoll</text>))
  svg << '</svg>'
  File.write(path, "#{svg.join("\n")}\n")
end

def print_tables(m, net)
  puts
  puts "polyphony benchmarks — #{Time.now.utc.strftime('%Y-%m-%d')}, Linux #{`uname -r`.strip}, " \
       "#{`nproc`.strip} cores, Ruby #{RUBY_VERSION}#{QUICK ? ', QUICK=1' : ''}" \
       "#{IO_URING ? '' : ' — io_uring unavailable on this machine'}"
  puts
  puts '| target | wanted | io_uring | epoll | met (io_uring) |'
  puts '| --- | --- | --- | --- | --- |'
  rows(m, net).each { |l, t, u, e, ok| puts "| #{l} | #{t} | #{fmt(u)} | #{fmt(e)} | #{met(ok)} |" }
  puts
  puts '| figure | io_uring | epoll | denominator |'
  puts '| --- | --- | --- | --- |'
  figures(m, net).each { |l, u, e, d| puts "| #{l} | #{fmt(u)} | #{fmt(e)} | #{d ? fmt(d) : ''} |" }
end

def figures(m, net)
  fig = ->(w, k, den = 'floor') { [m[w]['io_uring']&.fetch(k), m[w]['epoll'][k], m[w][den]&.fetch(k)] }
  netf = ->(kind, k) { [net[kind]['io_uring']&.[](k), net[kind]['epoll'][k], net[kind]['reference'][k]] }
  rows = [
    ['switches/s (floor: transfer ring)', *fig.call('switch', :switches_per_s)],
    ['switches/s (former: bare resume/yield)', *fig.call('switch', :switches_per_s, 'bare')],
    ['fibers/s, 100k then run (floor)', *fig.call('spawn', :spawn_per_s)],
    ['fibers/s, 1k batches (floor)', *fig.call('spawn', :batch_per_s)]
  ]
  m['memory']['floor'].keys.grep(/kb_per_fiber_/).each do |k|
    rows << ["KB per idle fiber at #{k.to_s[/\d+/]} (floor)", *fig.call('memory', k)]
  end
  rows += [
    ['pipe GB/s (floor: one thread alternating)', *fig.call('pipe', :gb_per_s)],
    ['pipe GB/s (former: two bare fibers)', *fig.call('pipe', :gb_per_s, 'bare')],
    ['timer overshoot mean ms', m['timers']['io_uring']&.fetch(:overshoot_mean_ms),
     m['timers']['epoll'][:overshoot_mean_ms], nil],
    ['cross-thread items/s (Thread::Queue, two threads)', *fig.call('xqueue', :items_per_s, 'bare')],
    ['cross-thread wake-up p50 µs (Thread::Queue)', *fig.call('xqueue', :wake_p50_us, 'bare')],
    ['cross-thread wake-up p99 µs (Thread::Queue)', *fig.call('xqueue', :wake_p99_us, 'bare')],
    ['echo msg/s, reference server (Rust server)', *netf.call('echo', :rate)],
    ['echo p99 ms, median of runs (Rust server)', *netf.call('echo', :p99_ms)],
    ['echo fairness min/mean (Rust server)', *netf.call('echo', :fair)],
    ['echo server CPU (Rust server)', *netf.call('echo', :cpu)],
    ['echo msg/s, lean server, io_uring only', net['echo']['lean'][:rate], nil, nil],
    ['http req/s, closed loop, reference server (Rust server)', *netf.call('http', :rate)],
    ['http p99 ms, median of runs (Rust server)', *netf.call('http', :p99_ms)],
    ['http p99 ms, each run (Rust server)', *netf.call('http', :p99_runs)],
    ['http server CPU (Rust server)', *netf.call('http', :cpu)],
    ['http req/s, lean server, io_uring only', net['http']['lean'][:rate], nil, nil]
  ]
  rows << ['http req/s, wrk (Rust server)', *netf.call('http', :wrk_rate)] if net['http']['reference'][:wrk_rate]
  rows
end

RESULTS = File.join(ROOT, 'bench/results.json')

if ENV['REPORT_ONLY'] == '1'
  # Prints the table of the last run again.
  data = JSON.parse(File.read(RESULTS))
  sym = ->(h) { h.transform_values { |by_impl| by_impl.transform_values { |r| r.transform_keys(&:to_sym) } } }
  print_tables(sym.call(data['micro']), sym.call(data['net']))
  write_chart(sym.call(data['micro']), sym.call(data['net']), File.join(ROOT, 'bench/results.svg'))
  exit
end

build_tools
micro_results = micro
net_results = { 'echo' => network('echo'), 'http' => network('http') }
File.write(RESULTS, JSON.pretty_generate({ date: Time.now.utc.to_s, quick: QUICK, io_uring: IO_URING,
                                           micro: micro_results, net: net_results }))
print_tables(micro_results, net_results)
write_chart(micro_results, net_results, File.join(ROOT, 'bench/results.svg'))
