# frozen_string_literal: true

# Issue 21, "switch": the candidates for a direct hand-off between fibers,
# measured in bare Ruby (no gem), so that the cost of each Ruby mechanism is
# seen alone. Run: ruby bench/prototypes/direct_switch.rb
#
# 1. ring of `transfer`s (the floor: one switch per hand-off);
# 2. a runner that `resume`s and fibers that `Fiber.yield` (the gem's
#    design: two switches per hand-off);
# 3. short fibers that end under `transfer`, as a direct hand-off design
#    would have them: maps in use and time, with and without a minor GC
#    every 1,000 ended fibers (Ruby releases the stack of a fiber that ends
#    under `transfer` only when the Fiber object is collected);
# 4. the same when the fibers stay referenced (`spin`'s caller holds them).

N = Integer(ENV.fetch('FIBERS', 1000))
M = Integer(ENV.fetch('ROUNDS', 1000))
SHORT = Integer(ENV.fetch('SHORT', 100_000))

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def maps = File.read('/proc/self/maps').count("\n")

def ring
  main = Fiber.current
  fibers = []
  left = N * M
  N.times do |i|
    fibers << Fiber.new do
      loop do
        left -= 1
        break if left <= 0

        fibers[(i + 1) % N].transfer
      end
      main.transfer
    end
  end
  t = now
  fibers[0].transfer
  (N * M) / (now - t)
end

def runner
  fibers = Array.new(N) { Fiber.new { M.times { Fiber.yield } } }
  t = now
  M.times { fibers.each(&:resume) }
  (N * M) / (now - t)
end

def short_transfer(gc_every)
  main = Fiber.current
  peak = maps
  ended = 0
  t = now
  SHORT.times do |i|
    f = Fiber.new { main.transfer }
    f.transfer
    ended += 1
    GC.start(full_mark: false, immediate_sweep: true) if gc_every && (ended % gc_every).zero?
    peak = [peak, maps].max if (i % 5000).zero?
  end
  [SHORT / (now - t), peak]
rescue FiberError => e
  [e.message, peak]
end

# The spawn shape: every fiber is still referenced when it ends (as `spin`'s
# caller holds it), so GC cannot release its stack either.
def kept_transfer(count)
  main = Fiber.current
  kept = Array.new(count) { Fiber.new { main.transfer } }
  before = maps
  kept.each(&:transfer)
  maps - before
end

def short_resume
  peak = maps
  t = now
  SHORT.times do |i|
    Fiber.new { nil }.resume
    peak = [peak, maps].max if (i % 5000).zero?
  end
  [SHORT / (now - t), peak]
end

def rate(value) = value.is_a?(Float) ? format('%<v>.3g fibers/s', v: value) : value

puts "ruby #{RUBY_VERSION}, vm.max_map_count #{File.read('/proc/sys/vm/max_map_count').strip}"
puts format('ring (transfer):          %<v>.3g switches/s', v: ring)
puts format('runner (resume + yield):  %<v>.3g hand-offs/s (2 switches each)', v: runner)
[['short fibers, resume:    ', short_resume],
 ['short fibers, transfer:  ', short_transfer(nil)],
 ['  + minor GC every 1,000:', short_transfer(1000)]].each do |label, (r, peak)|
  puts "#{label} #{rate(r)}, peak maps #{peak}"
end
puts "20,000 fibers ended under transfer, still referenced: #{format('%+d', kept_transfer(20_000))} maps"
