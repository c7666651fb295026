namespace Shepherd.Client;

/// <summary>
/// A call the server refused or could not answer: <see cref="StatusCode"/> is its HTTP status
/// (null when no answer came, or the circuit breaker is open), the rest what the server said.
/// </summary>
public sealed class ShepherdApiException : ShepherdException
{
    /// <summary>Creates an exception with no message.</summary>
    public ShepherdApiException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public ShepherdApiException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public ShepherdApiException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    internal ShepherdApiException(string message, int? statusCode, string? errorCode, string? param, Exception? innerException = null)
        : base(message, innerException)
    {
        StatusCode = statusCode;
        ErrorCode = errorCode;
        Param = param;
        IsTransient = statusCode is not { } status || Http.ApiPipeline.IsTransient((System.Net.HttpStatusCode)status);
    }

    /// <summary>
    /// True when trying again later may succeed: no answer came (the server could not be reached,
    /// did not answer in time, or the circuit breaker held the call back), or the answer said
    /// "not now" (408, 425, 429, 500, 502, 503, 504, 529). False for a refusal, and for an
    /// exception made by its public constructors.
    /// </summary>
    public bool IsTransient { get; }

    /// <summary>The HTTP status; null when the server gave no answer.</summary>
    public int? StatusCode { get; }

    /// <summary>The server's error code or type, such as <c>invalid_request_error</c>.</summary>
    public string? ErrorCode { get; }

    /// <summary>The field the error is about, such as <c>requests[3]</c>.</summary>
    public string? Param { get; }

    /// <summary>The id the server gave the refused call (<c>x-request-id</c>, or Anthropic's <c>request-id</c>), to quote to its operators; null when it gave none.</summary>
    public string? RequestId { get; init; }

    /// <summary>
    /// The id of the call that could wait (<see cref="ShepherdClient.CallAsync(string, System.Text.Json.Nodes.JsonObject, TimeSpan, CancellationToken)"/>)
    /// whose answer this is: the provider's refusal or failure as the server keeps it, final, so
    /// asking again gives the same. Null for every other error, such as a call id the server does not know.
    /// </summary>
    public string? CallId { get; init; }
}
