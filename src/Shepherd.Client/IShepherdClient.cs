using System.Text.Json.Nodes;

namespace Shepherd.Client;

/// <summary>
/// What <see cref="ShepherdClient"/> does, as an interface: code that takes an
/// <see cref="IShepherdClient"/> can be given a fake in its tests. <c>AddShepherdClient</c>
/// registers the client under this interface too.
/// </summary>
public interface IShepherdClient
{
    /// <summary>Creates a batch of the requests in <paramref name="batch"/>.</summary>
    /// <returns>The batch as the server describes it once created.</returns>
    /// <exception cref="ArgumentException">When the batch has no requests, or asks for what the backend cannot do.</exception>
    /// <exception cref="ShepherdApiException">When the server refuses the batch or cannot be reached.</exception>
    Task<Batch> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken = default);

    /// <summary>Creates a batch of the JSONL batch file at <paramref name="path"/>, streamed.</summary>
    /// <returns>The batch as the server describes it once created.</returns>
    /// <exception cref="FileNotFoundException">When there is no such file.</exception>
    /// <exception cref="ShepherdApiException">When the server refuses the batch or cannot be reached.</exception>
    Task<Batch> CreateBatchFromFileAsync(string path, FileBatchOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Creates a batch of the JSONL batch file at <paramref name="path"/> with the default options.</summary>
    /// <returns>The batch as the server describes it once created.</returns>
    Task<Batch> CreateBatchFromFileAsync(string path, CancellationToken cancellationToken) =>
        CreateBatchFromFileAsync(path, null, cancellationToken);

    /// <summary>The batch as the server describes it now.</summary>
    /// <exception cref="ShepherdApiException">404 for a batch the key cannot see.</exception>
    Task<Batch> GetBatchAsync(string batchId, CancellationToken cancellationToken = default);

    /// <summary>Every batch of the key, newest first, fetched a page at a time.</summary>
    IAsyncEnumerable<Batch> ListBatchesAsync(CancellationToken cancellationToken = default);

    /// <summary>Stops sending the batch's requests; finished ones keep their results.</summary>
    /// <returns>The batch, cancelling, or as it ended when it already had.</returns>
    Task<Batch> CancelBatchAsync(string batchId, CancellationToken cancellationToken = default);

    /// <summary>Waits until the batch has ended, reporting to <paramref name="progress"/>; a timeout only stops the waiting.</summary>
    /// <returns>The batch as it ended, or as it was when the wait timed out (<see cref="BatchCompletion.TimedOut"/>).</returns>
    Task<BatchCompletion> WaitForCompletionAsync(string batchId, IProgress<BatchProgress>? progress = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default);

    /// <summary>Waits until the batch has ended.</summary>
    /// <returns>The batch as it ended, or as it was when the wait timed out.</returns>
    Task<BatchCompletion> WaitForCompletionAsync(string batchId, CancellationToken cancellationToken) =>
        WaitForCompletionAsync(batchId, null, null, cancellationToken);

    /// <summary>The results of an ended batch, streamed a page at a time.</summary>
    /// <exception cref="BatchNotEndedException">When the batch is still running.</exception>
    IAsyncEnumerable<BatchResult> GetResultsAsync(string batchId, CancellationToken cancellationToken = default);

    /// <summary>The result of one request of an ended batch.</summary>
    /// <returns>The result, or null when the batch has no such custom id.</returns>
    /// <exception cref="BatchNotEndedException">When the batch is still running.</exception>
    Task<BatchResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken = default);

    /// <summary>Writes the results of an ended batch to a JSONL file, which appears whole or not at all.</summary>
    /// <returns>How many results were written.</returns>
    /// <exception cref="BatchNotEndedException">When the batch is still running.</exception>
    Task<long> ExportResultsAsync(string batchId, string path, CancellationToken cancellationToken = default);

    /// <summary>A new batch of the requests of an ended batch that failed or expired; asking twice returns the same one.</summary>
    /// <returns>The retry batch, or null when nothing failed or expired.</returns>
    /// <exception cref="BatchNotEndedException">When the batch is still running.</exception>
    Task<Batch?> RetryFailedAsync(string batchId, CancellationToken cancellationToken = default);

    /// <summary>Makes a call that can wait until <paramref name="deadline"/> (a Shepherd server's <c>x-shepherd-deadline</c>) and returns its answer once it is in.</summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    /// <exception cref="ShepherdApiException">When the server refuses the call, or the provider's answer is a refusal or failure (<see cref="ShepherdApiException.CallId"/> set).</exception>
    /// <exception cref="NotSupportedException">On the OpenAI and Anthropic APIs, which have no such calls.</exception>
    Task<CallAnswer> CallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default);

    /// <summary>Makes a call that can wait of a typed chat request to <paramref name="model"/>, sent to <c>/v1/chat/completions</c>.</summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    Task<CallAnswer> CallAsync(string model, ChatRequest chat, TimeSpan deadline, CancellationToken cancellationToken = default);

    /// <summary>Sends a call that can wait until <paramref name="deadline"/> and returns its id once the server has stored it.</summary>
    /// <returns>The call's id, for <see cref="GetCallAsync"/>.</returns>
    /// <exception cref="NotSupportedException">On the OpenAI and Anthropic APIs, which have no such calls.</exception>
    Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default);

    /// <summary>The answer of the call <paramref name="callId"/> once it is in, however long that takes.</summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    /// <exception cref="ShepherdApiException">404 for an id the key cannot see; the provider's refusal or failure with <see cref="ShepherdApiException.CallId"/> set.</exception>
    Task<CallAnswer> GetCallAsync(string callId, CancellationToken cancellationToken = default);

    /// <summary>A handle on the batch <paramref name="batchId"/>, rebuilt from the id alone.</summary>
    BatchHandle Batch(string batchId) => new(this, batchId);
}
