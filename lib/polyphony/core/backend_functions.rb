# frozen_string_literal: true

# `Polyphony.backend_*`: the current thread's backend operations as module
# functions.
module Polyphony
  # Names of the backend operations exposed as `Polyphony.backend_NAME`,
  # each exactly `Thread.current.backend.NAME(...)`.
  BACKEND_FUNCTIONS = %i[
    accept accept_loop close connect connect_addr double_splice feed_loop read read_loop recv
    recv_feed_loop recv_loop send sleep splice tee timeout timer_loop
    wait_event wait_io waitpid write
  ].freeze

  BACKEND_FUNCTIONS.each do |name|
    define_singleton_method(:"backend_#{name}") do |*args, &block|
      Thread.current.backend.__send__(name, *args, &block)
    end
  end
end
