namespace Shepherd.Simulator;

/// <summary>A request as the simulator sees it, whichever transport carried it.</summary>
/// <param name="Method">The HTTP method.</param>
/// <param name="Path">The url path, such as <c>/v1/chat/completions</c>.</param>
/// <param name="Body">The request body.</param>
/// <param name="Authorization">The <c>Authorization</c> header, if any.</param>
/// <param name="ApiKeyHeader">The <c>x-api-key</c> header, if any.</param>
/// <param name="ContentType">The body's <c>Content-Type</c>, if any: a file upload is multipart and names its boundary there.</param>
/// <param name="Query">The url's query, with or without its leading <c>?</c>, such as <c>?limit=2&amp;after=batch_1</c>.</param>
/// <param name="BaseUrl">The server's root as the client reached it (scheme, host and port), for the absolute urls of answers such as an Anthropic <c>results_url</c>.</param>
public sealed record SimulatedRequest(
    string Method,
    string Path,
    byte[] Body,
    string? Authorization = null,
    string? ApiKeyHeader = null,
    string? ContentType = null,
    string? Query = null,
    Uri? BaseUrl = null);

/// <summary>What the transport must do instead of answering.</summary>
public enum SimulatedFault
{
    /// <summary>Answer normally.</summary>
    None,

    /// <summary>Break the connection without an answer.</summary>
    Reset,
}

/// <summary>An answer of the simulator.</summary>
/// <param name="StatusCode">The HTTP status.</param>
/// <param name="Headers">Response headers besides the content type.</param>
/// <param name="Body">The body.</param>
/// <param name="Fault">A transport fault to inject instead of the answer.</param>
/// <param name="ContentType">The body's content type: JSON, but for the JSONL of batch results and files, and the events of a stream.</param>
public sealed record SimulatedResponse(
    int StatusCode,
    IReadOnlyList<KeyValuePair<string, string>> Headers,
    byte[] Body,
    SimulatedFault Fault = SimulatedFault.None,
    string ContentType = "application/json")
{
    /// <summary>The events of a streamed answer, which together are its <see cref="Body"/>; empty for a whole answer.</summary>
    public IReadOnlyList<byte[]> Events { get; init; } = [];

    /// <summary>How long a transport waits between two of the <see cref="Events"/> (<see cref="SimulatorOptions.StreamInterval"/>).</summary>
    public TimeSpan EventInterval { get; init; }
}

/// <summary>Counters of a simulator, as a snapshot.</summary>
/// <param name="Requests">Requests received.</param>
/// <param name="InFlight">Requests received and not yet answered.</param>
/// <param name="PeakInFlight">The most requests ever in flight at once.</param>
/// <param name="ByStatus">Answers by HTTP status.</param>
/// <param name="Resets">Connections reset on purpose.</param>
/// <param name="Hangs">Requests left unanswered on purpose.</param>
/// <param name="Duplicates">Executions of a body that had been executed before: work done, and billed, twice.</param>
/// <param name="Batch">What the batch APIs did.</param>
/// <param name="FlexRequests">Realtime requests that asked for the flex tier (<c>"service_tier":"flex"</c>).</param>
/// <param name="FlexRefusals">Flex requests refused 429 <c>resource_unavailable</c>.</param>
public sealed record SimulatorStats(
    long Requests,
    long InFlight,
    long PeakInFlight,
    IReadOnlyDictionary<int, long> ByStatus,
    long Resets,
    long Hangs,
    long Duplicates,
    BatchStats Batch,
    long FlexRequests,
    long FlexRefusals)
{
    /// <summary>Streams whose client left before their last event (a paced stream, <see cref="SimulatorOptions.StreamInterval"/>).</summary>
    public long StreamsCut { get; init; }
}

/// <summary>
/// Counters of the simulator's batch APIs (OpenAI batches and Anthropic message batches
/// together). A line counts once its job has ended, when its fate is known.
/// </summary>
/// <param name="Jobs">Batch jobs created.</param>
/// <param name="LinesSucceeded">Lines of ended jobs answered with success.</param>
/// <param name="LinesErrored">Lines of ended jobs answered with an error (a 4xx or 5xx of their own).</param>
/// <param name="LinesExpired">Lines of ended jobs that never ran: the job expired first.</param>
/// <param name="LinesCancelled">Lines of ended jobs that had not run when the job was cancelled.</param>
public sealed record BatchStats(long Jobs, long LinesSucceeded, long LinesErrored, long LinesExpired, long LinesCancelled);
