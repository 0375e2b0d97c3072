# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'polyphony'
require 'open3'
require 'rbconfig'

module SpecHelpers
  RUBY = File.join(RbConfig::CONFIG['bindir'], RbConfig::CONFIG['ruby_install_name'])
  LIB = File.expand_path('../lib', __dir__)

  # Runs `code` in a child Ruby with polyphony loaded (same backend as this
  # run); returns [stdout, stderr, status].
  # A child still running after `timeout` seconds is killed (its status
  # then reports the signal).
  def run_ruby(code, env: {}, stdin: '', timeout: 30)
    Open3.popen3(env, RUBY, '-I', LIB, '-e', code) do |i, o, e, t|
      out = Thread.new { o.read }
      err = Thread.new { e.read }
      i.write(stdin)
      i.close
      Process.kill(:KILL, t.pid) unless t.join(timeout)
      [out.value, err.value, t.value]
    end
  end

  def backend
    Thread.current.backend
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

RSpec.configure do |config|
  config.include SpecHelpers
  config.disable_monkey_patching!
  config.order = :defined

  config.before(:suite) do
    puts "polyphony specs on the #{Thread.current.backend.kind} backend"
  end

  config.after do
    # Nothing may leak from one example into the next.
    Fiber.current.shutdown_all_children
    Fiber.current.receive_all_pending
    Fiber.current.__reset_monitor_mailbox__
    backend.idle_proc = nil
  end
end
