# frozen_string_literal: true

# Exception extensions: fiber provenance and exception-spec normalisation.
class ::Exception
  # The fiber in which the exception was uncaught (set when it escapes).
  attr_accessor :source_fiber

  # The fiber that was current when the exception was raised into it.
  attr_accessor :raising_fiber

  class << self
    attr_accessor :__disable_sanitized_backtrace__

    # Normalises an exception spec: String → RuntimeError, [klass, msg] →
    # klass.new(msg), Class → klass.new(message), instance → itself.
    def instantiate(error = nil, message = nil)
      case error
      when Exception then error
      when String then RuntimeError.new(error)
      when Array then error[0].new(error[1])
      when Class then message.nil? ? error.new : error.new(message)
      else RuntimeError.new
      end
    end
  end

  # Raises the exception (overridden by Polyphony::Interjection).
  def invoke
    Kernel.raise(self)
  end
end
