# frozen_string_literal: true

# The exceptions Polyphony uses to control fibers.
module Polyphony
  # Base class of the exceptions used to control fibers. They derive from
  # Exception, not StandardError, so a bare `rescue` does not swallow them.
  class BaseException < ::Exception
    attr_reader :value

    def initialize(value = nil)
      @value = value
      value.nil? ? super() : super(value)
    end
  end

  # Stops a fiber or a scope quietly; the fiber's result is the value.
  class MoveOn < BaseException; end

  # Cancellation that propagates to the parent like an error.
  class Cancel < BaseException; end

  # Parent-driven termination (result nil unless a value is given).
  class Terminate < BaseException; end

  # Restarts the receiving fiber with `value` as its block argument.
  class Restart < BaseException; end

  # Runs a proc in the target fiber instead of raising.
  class Interjection < BaseException
    def initialize(proc)
      super()
      @proc = proc
    end

    def invoke
      @proc.call
    end
  end

  # Private marker delivered by Backend#timeout; recognised by identity.
  class TimeoutException < ::Exception; end
end
