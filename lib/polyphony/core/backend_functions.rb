# frozen_string_literal: true

# `Polyphony.backend_*`: the current thread's backend operations as module
# functions.
module Polyphony
  # Names of the backend operations exposed as `Polyphony.backend_NAME`,
  # each exactly `Thread.current.backend.NAME(...)`.
  BACKEND_FUNCTIONS = %i[
    accept accept_loop close connect connect_addr double_splice feed_loop read read_loop recv
    recv_feed_loop recv_loop recvmsg send sendmsg sendv sleep splice tee timeout timer_loop
    wait_event wait_io waitpid write
  ].freeze

  # Plain methods, not `define_singleton_method` blocks: a block-defined
  # method runs in a nested VM loop (`vm_exec`, with its `setjmp` buffer) on
  # the machine stack, which every fiber waiting in a backend operation kept,
  # and which Ruby's GC scans conservatively at every minor GC.
  BACKEND_FUNCTIONS.each do |name|
    singleton_class.class_eval <<~RUBY, __FILE__, __LINE__ + 1
      def backend_#{name}(*args, &block)         # def backend_read(*args, &block)
        Thread.current.backend.#{name}(*args, &block) #   Thread.current.backend.read(*args, &block)
      end                                        # end
    RUBY
  end
end
