# frozen_string_literal: true

# `require 'polyphony/adapters/readline'`: `Readline.readline` waits for
# input on a thread of its own (a one-thread ThreadPool), so the other fibers
# of the calling thread keep running meanwhile.
require 'polyphony'
require 'readline'

module Polyphony
  # The thread Readline runs on.
  READLINE_POOL = Polyphony::ThreadPool.new(1)

  # Prepended to `Readline.singleton_class`.
  module ReadlineExtensions
    def readline(*args)
      READLINE_POOL.process { super }
    end
  end
end

::Readline.singleton_class.prepend(Polyphony::ReadlineExtensions)
