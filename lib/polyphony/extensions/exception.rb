# frozen_string_literal: true

# Exception extensions: fiber provenance, cross-fiber backtraces and
# exception-spec normalisation.
class ::Exception
  # The gem's own Ruby files: their frames are dropped from sanitized
  # backtraces.
  POLYPHONY_DIR = File.expand_path('../..', __dir__)

  # The fiber in which the exception was uncaught (set when it escapes).
  attr_accessor :source_fiber

  # The fiber that was current when the exception was made.
  attr_accessor :raising_fiber

  alias orig_initialize initialize
  alias orig_backtrace backtrace

  def initialize(...)
    @raising_fiber = Fiber.current
    orig_initialize(...)
  end

  # The backtrace, sanitized from the second call on (the first one is
  # Ruby's own, when the exception is raised): the gem's frames are dropped
  # and the spin sites of the raising fiber and its ancestors are appended,
  # so an error raised in a child fiber shows where that fiber came from.
  # `Exception.__disable_sanitized_backtrace__ = true` turns this off.
  def backtrace
    unless @__first_backtrace_call__
      @__first_backtrace_call__ = true
      return orig_backtrace
    end
    __sanitized_backtrace__
  end

  class << self
    # True: backtraces are left as Ruby makes them.
    attr_accessor :__disable_sanitized_backtrace__

    # Normalises an exception spec: String → RuntimeError, [klass, msg] →
    # klass.new(msg), Class → klass.new(message), instance → itself.
    # TypeError for a class that is not an exception class, or an object
    # that is neither an exception, a class, a message nor nil (as
    # `Kernel#raise`).
    def instantiate(error = nil, message = nil)
      case error
      when Exception then error
      when String then RuntimeError.new(error)
      when Array then instantiate(*error)
      when Class then __instantiate_class__(error, message)
      when nil then RuntimeError.new
      else Kernel.raise TypeError, 'exception class/object expected'
      end
    end

    private

    def __instantiate_class__(klass, message)
      Kernel.raise TypeError, 'exception class/object expected' unless klass <= Exception

      message.nil? ? klass.new : klass.new(message)
    end
  end

  # Raises the exception (overridden by Polyphony::Interjection).
  def invoke
    Kernel.raise(self)
  end

  private

  def __sanitized_backtrace__
    trace = orig_backtrace
    return trace if trace.nil? || ::Exception.__disable_sanitized_backtrace__

    fiber = @raising_fiber
    trace += fiber.caller if fiber.is_a?(Fiber) && fiber.respond_to?(:caller) && !fiber.main?
    trace.reject { |line| line.start_with?(POLYPHONY_DIR) }
  end
end
