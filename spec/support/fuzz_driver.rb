# frozen_string_literal: true

# Calls every public method of one group of the gem's API with bad input
# (wrong types, nil, negative and huge numbers, NaN, frozen strings, closed
# IOs, foreign objects) and prints one line per call:
#   "call <group> <method> <args>" before it, then "done <outcome>",
# where the outcome is `ok`, `timeout` (interrupted by the harness's
# deadline: a wait, not a hang) or the class of the exception raised.
# Run as a child process by spec/stress/fuzz_spec.rb, so that a crash, an
# abort or a CPU-bound hang shows as the child's death or timeout, with the
# last "call" line naming the culprit.
#
#   ruby -Ilib spec/support/fuzz_driver.rb GROUP

require 'polyphony'
require 'socket'

$stdout.sync = true
GROUP = ARGV.fetch(0)
# `gc_stress`: every call runs under GC.stress (a missing mark of what the
# call holds shows as a crash or a wrong object).
GC_STRESS = ARGV[1] == 'gc_stress'

# Fresh bad values for each call (some are mutated or closed by the calls).
def bad_values
  closed = IO.pipe.each(&:close)[0]
  # Under GC.stress (slow: every allocation collects) a subset.
  return [nil, 2**64, Object.new, closed] if GC_STRESS

  [nil, -1, 2**64, -(2**64), 1.5, Float::NAN, 'str', :sym, Object.new, [], { a: 1 }, closed, true]
end

def describe(args)
  args.map do |a|
    if a.is_a?(IO)
      a.closed? ? 'closed-IO' : 'IO'
    else
      a.inspect[0, 20]
    end
  end.join(',')
end

# Runs one call in a sandbox fiber: what it spins is stopped with it, and
# an exception it raises (or that one of its children raises into it) is
# the outcome.
def attempt(label, meth, args, &block)
  puts "call #{GROUP} #{label}##{meth} #{describe(args)}"
  outcome = nil
  sandbox = spin do
    GC.stress = GC_STRESS
    outcome = outcome_of { block.call(args) }
  ensure
    GC.stress = false
  end
  # Long enough for any bounded wait; a CPU-bound hang never gets here.
  waited = outcome_of(2) { sandbox.await }
  sandbox.stop
  puts "done #{outcome || (waited == 'timeout' ? 'stuck' : waited)}"
end

# `ok`, `timeout` (still waiting after `limit` seconds) or the class of the
# exception the block raised.
def outcome_of(limit = 0.05, &)
  r = move_on_after(limit, with_value: :__timeout__, &)
  r.equal?(:__timeout__) ? 'timeout' : 'ok'
rescue Exception => e # rubocop:disable Lint/RescueException
  e.class.name || e.class.inspect
end

# Calls `meth` on the object `make` returns, with 0..3 arguments, each
# argument position taking each bad value in turn (the others nil). Blocks
# given to the calls yield (so loops they run never hog the thread).
def fuzz(label, meths, make, call: :public_send)
  meths.each do |m|
    attempt(label, m, []) { |a| make.call.__send__(call, m, *a) { |*| snooze } }
    (1..(GC_STRESS ? 1 : 3)).each do |n|
      n.times do |pos|
        bad_values.each do |v|
          args = Array.new(n)
          args[pos] = v
          attempt(label, m, args) { |a| make.call.__send__(call, m, *a) { |*| snooze } }
        end
      end
    end
  end
end

# A started fiber that ends quietly whatever is raised into it.
def target_fiber
  f = spin do
    suspend
  rescue Exception # rubocop:disable Lint/RescueException
    nil
  end
  snooze
  f
end

# Never called: they end the process, fork, spawn commands, signal real
# processes, or rebuild the thread's backend (checked by their own specs).
UNSAFE = %i[fork watch_process kill_process post_fork finalize original_pid= exit method_missing].freeze

def public_api(mod, singleton: false)
  list = singleton ? mod.singleton_methods : mod.public_instance_methods(false)
  list.reject { |m| m.to_s.start_with?('__') || UNSAFE.include?(m) }.sort
end

case GROUP
when 'backend'
  fuzz('Backend', public_api(Polyphony::Backend), -> { Thread.current.backend })
when 'module'
  fuzz('Polyphony', public_api(Polyphony, singleton: true), -> { Polyphony })
when 'fiber'
  fuzz('Fiber', public_api(Fiber), -> { target_fiber })
  fuzz('Fiber.', %i[await join select], -> { Fiber })
when 'kernel'
  kernel = %i[spin spin_loop spin_scope snooze suspend sleep after every move_on_after cancel_after
              throttled_loop receive receive_all_pending supervise]
  # Private, as in Kernel: called the way programs call them.
  fuzz('Kernel', kernel, -> { Object.new }, call: :__send__)
when 'io_objects'
  # The IO, socket and Thread methods the gem defines or patches (by where
  # they are defined), on live objects.
  ours = lambda do |klass|
    klass.public_instance_methods.select do |m|
      loc = klass.instance_method(m).source_location
      loc && loc[0].include?('lib/polyphony') && !m.to_s.start_with?('__') && !UNSAFE.include?(m)
    end.sort
  end
  fuzz('IO(r)', ours.call(IO) - %i[reopen], -> { IO.pipe[0] })
  fuzz('IO(w)', ours.call(IO) - %i[reopen], -> { IO.pipe[1] })
  fuzz('UNIXSocket', ours.call(UNIXSocket), -> { UNIXSocket.pair[0] })
  fuzz('Thread', ours.call(Thread) - %i[kill kill_safe terminate exit raise backend=], -> { Thread.new { sleep 0.2 } })
when 'io'
  # IO's class methods that take IOs, Strings or callables (not the ones
  # that take paths or commands: bad input there names real files).
  fuzz('IO.', %i[gzip gunzip deflate inflate http1_splice_chunked splice double_splice tee], -> { IO })
  fuzz('Polyphony.', %i[__with_raw_buffer__ __raw_buffer_get__ __raw_buffer_set__ __raw_buffer_size__],
       -> { Polyphony })
when 'constructs'
  {
    'Queue' => -> { Polyphony::Queue.new },
    'Event' => -> { Polyphony::Event.new },
    'ResourcePool' => -> { Polyphony::ResourcePool.new(limit: 2) { Object.new } },
    'Mutex' => -> { Polyphony::Mutex.new },
    'ConditionVariable' => -> { Polyphony::ConditionVariable.new },
    'Timer' => -> { Polyphony::Timer.new(resolution: 0.01) },
    'Pipe' => -> { Polyphony::Pipe.new },
    'Throttler' => -> { Polyphony::Throttler.new(100) }
  }.each do |name, make|
    klass = make.call.class
    fuzz(name, public_api(klass), make)
    fuzz("#{name}.new", [:new], -> { klass })
  end
else
  abort "unknown group #{GROUP}"
end
puts 'finished'
