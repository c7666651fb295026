using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Shepherd.Client.Backends;
using Shepherd.Client.Http;

namespace Shepherd.Client;

/// <summary>
/// Batch work from C#: create a batch (inline or from a JSONL file), wait for it with progress,
/// stream its results with constant memory, retry what failed. Speaks to a Shepherd server, or
/// with the same calls to the OpenAI or Anthropic batch API (<see cref="ShepherdClientOptions.Api"/>).
/// Its own calls are retried on transient failures (honouring <c>retry-after</c>) behind a
/// circuit breaker, and every create carries an idempotency key, so a retried create never makes
/// a second batch. Thread-safe.
/// </summary>
public sealed class ShepherdClient : IShepherdClient, IDisposable
{
    /// <summary>The name of the <see cref="System.Diagnostics.ActivitySource"/> the client traces its calls with: one activity per call, its retries inside it.</summary>
    public const string ActivitySourceName = "Shepherd.Client";

    private readonly ApiPipeline _pipeline;
    private readonly IBatchBackend _backend;

    /// <summary>Creates a client; <paramref name="http"/> (for example from IHttpClientFactory) is used as given and not disposed.</summary>
    public ShepherdClient(ShepherdClientOptions options, HttpClient? http = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options.Validated();
        _pipeline = new ApiPipeline(Options, http);
        _backend = Options.Api switch
        {
            BatchApi.OpenAI => new OpenAIBackend(_pipeline, Options),
            BatchApi.Anthropic => new AnthropicBackend(_pipeline, Options),
            _ => new ShepherdBackend(_pipeline, Options),
        };
    }

    /// <summary>The checked options the client runs with.</summary>
    public ShepherdClientOptions Options { get; }

    /// <summary>Creates a batch of the requests in <paramref name="batch"/>.</summary>
    public Task<Batch> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.Requests.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one request.", nameof(batch));
        }

        return _backend.CreateAsync(batch, batch.IdempotencyKey ?? NewIdempotencyKey(), cancellationToken);
    }

    /// <summary>Creates a batch of the JSONL batch file at <paramref name="path"/> with the default options.</summary>
    public Task<Batch> CreateBatchFromFileAsync(string path, CancellationToken cancellationToken) =>
        CreateBatchFromFileAsync(path, null, cancellationToken);

    /// <summary>
    /// Creates a batch of the JSONL batch file at <paramref name="path"/>, streamed: uploaded as a
    /// file to a Shepherd server or the OpenAI API, sent as the create's body to the Anthropic API.
    /// </summary>
    public Task<Batch> CreateBatchFromFileAsync(string path, FileBatchOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"There is no file {path}.", path);
        }

        options ??= new FileBatchOptions();
        return _backend.CreateFromFileAsync(path, options, options.IdempotencyKey ?? NewIdempotencyKey(), cancellationToken);
    }

    /// <summary>The batch as the server describes it now.</summary>
    public Task<Batch> GetBatchAsync(string batchId, CancellationToken cancellationToken = default) =>
        _backend.GetAsync(Checked(batchId), cancellationToken);

    /// <summary>Every batch the key can see, newest first; pages are fetched as the enumeration goes.</summary>
    public IAsyncEnumerable<Batch> ListBatchesAsync(CancellationToken cancellationToken = default) => _backend.ListAsync(cancellationToken);

    /// <summary>
    /// Cancels a batch: nothing more is sent, and what finished keeps its result. A batch that has
    /// already ended is returned as it ended, on every backend.
    /// </summary>
    public async Task<Batch> CancelBatchAsync(string batchId, CancellationToken cancellationToken = default)
    {
        try
        {
            return await _backend.CancelAsync(Checked(batchId), cancellationToken);
        }
        catch (ShepherdApiException ex) when (ex.StatusCode is 400 or 409)
        {
            // APIs refuse to cancel an ended batch, each in its own way; ended is what was asked for.
            var batch = await GetBatchAsync(batchId, cancellationToken);
            if (!batch.HasEnded)
            {
                throw;
            }

            return batch;
        }
    }

    /// <summary>A handle on the batch <paramref name="batchId"/>, for example one created by another process.</summary>
    public BatchHandle Batch(string batchId) => new(this, Checked(batchId));

    /// <summary>Waits until the batch has ended, as <see cref="WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/> does.</summary>
    public Task<BatchCompletion> WaitForCompletionAsync(string batchId, CancellationToken cancellationToken) =>
        WaitForCompletionAsync(batchId, null, null, cancellationToken);

    /// <summary>Waits until the batch has ended, reporting to <paramref name="progress"/>, as <see cref="WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/> does.</summary>
    public Task<BatchCompletion> WaitForCompletionAsync(string batchId, IProgress<BatchProgress>? progress, CancellationToken cancellationToken) =>
        WaitForCompletionAsync(batchId, progress, null, cancellationToken);

    /// <summary>
    /// Waits until the batch has ended (completed, failed, cancelled or expired), reporting what it
    /// sees to <paramref name="progress"/> at once, after <see cref="ShepherdClientOptions.PollInitialDelay"/>,
    /// then less and less often (by <see cref="ShepherdClientOptions.PollGrowth"/>, up to
    /// <see cref="ShepherdClientOptions.PollMaxDelay"/>). A Shepherd server holds each look until the
    /// batch ends, so the wait returns as soon as it has; the OpenAI and Anthropic APIs are looked
    /// at on that schedule. A server that cannot be reached is tried again, with
    /// <see cref="BatchProgress.Reconnecting"/> reported, for up to <see cref="ShepherdClientOptions.WaitOutageTolerance"/>.
    /// Without a <paramref name="timeout"/> it waits <see cref="DefaultTimeout"/>. A timeout only
    /// stops the waiting: the batch goes on. No handler of <paramref name="progress"/> runs after
    /// this returns: a <see cref="Progress{T}"/>, which posts its handler to run later, is waited for.
    /// </summary>
    public async Task<BatchCompletion> WaitForCompletionAsync(
        string batchId,
        IProgress<BatchProgress>? progress = null,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        using var relay = new ProgressRelay(progress);
        var completion = await WaitAsync(batchId, relay, timeout, cancellationToken);
        await relay.HandledAsync(cancellationToken);
        return completion;
    }

    private async Task<BatchCompletion> WaitAsync(string batchId, ProgressRelay progress, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var time = Options.TimeProvider;

        // The first look is an ordinary call: a server never reached (a wrong url) fails the wait
        // as it fails any call; an outage after it is ridden out.
        var batch = await GetBatchAsync(batchId, cancellationToken);
        var started = time.GetUtcNow();
        var deadline = started + (timeout ?? DefaultTimeout(batch));
        var first = (At: started, batch.Finished);
        var delay = Options.PollInitialDelay;
        var outage = new Outage(this);
        progress.Report(new BatchProgress(batch, Eta(first, batch, started)));
        while (!batch.HasEnded)
        {
            var now = time.GetUtcNow();
            var left = deadline - now;
            if (left <= TimeSpan.Zero)
            {
                return new BatchCompletion(batch, TimedOut: true);
            }

            try
            {
                batch = await _backend.WatchAsync(batchId, delay < left ? delay : left, cancellationToken);
                outage.Over();
            }
            catch (ShepherdApiException ex) when (ex.IsTransient)
            {
                if (outage.Next() is not { } pause)
                {
                    throw;
                }

                progress.Report(new BatchProgress(batch, null) { UnreachableSince = outage.Since, ReconnectReason = ex.Message });
                left = deadline - time.GetUtcNow();
                if (left > TimeSpan.Zero)
                {
                    await Task.Delay(pause < left ? pause : left, time, cancellationToken);
                }

                continue;
            }

            delay = TimeSpan.FromTicks(Math.Min((long)(delay.Ticks * Options.PollGrowth), Options.PollMaxDelay.Ticks));
            progress.Report(new BatchProgress(batch, Eta(first, batch, time.GetUtcNow())));
        }

        return new BatchCompletion(batch, TimedOut: false);
    }

    /// <summary>
    /// Makes a call that can wait until <paramref name="deadline"/> (a Shepherd server's
    /// <c>x-shepherd-deadline</c>): <paramref name="body"/>, the provider's own request body, goes
    /// to <paramref name="url"/> (such as <c>/v1/chat/completions</c>, or <c>/v1/messages</c> with
    /// an Anthropic body), the server collects it with others into a batch it sends at the batch
    /// price where the provider has one, and this returns its answer once it is in, as
    /// <see cref="GetCallAsync"/> does. It needs only the call's id to get there, so it rides out
    /// server restarts; a call lives on the server whatever happens here.
    /// </summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    /// <exception cref="ShepherdApiException">When the server refuses the call (a body without a model, a stream), or the provider's answer is a refusal or failure (<see cref="ShepherdApiException.CallId"/> set).</exception>
    /// <exception cref="NotSupportedException">On the OpenAI and Anthropic APIs, which have no such calls.</exception>
    public async Task<CallAnswer> CallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default) =>
        await AnswerAsync(await StartCallAsync(url, body, deadline, cancellationToken), CallKind.Look, cancellationToken);

    /// <summary>
    /// Makes a call that can wait until <paramref name="deadline"/> of a typed chat request to
    /// <paramref name="model"/>, sent to <c>/v1/chat/completions</c>, as
    /// <see cref="CallAsync(string, JsonObject, TimeSpan, CancellationToken)"/> does; the answer's
    /// <see cref="CallAnswer.Text"/> is the reply.
    /// </summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    public Task<CallAnswer> CallAsync(string model, ChatRequest chat, TimeSpan deadline, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(model);
        ArgumentNullException.ThrowIfNull(chat);
        return CallAsync(Requests.ChatEndpoint, Requests.BodyOf(chat, Requests.ChatEndpoint, model), deadline, cancellationToken);
    }

    /// <summary>
    /// Sends a call that can wait until <paramref name="deadline"/>, as
    /// <see cref="CallAsync(string, JsonObject, TimeSpan, CancellationToken)"/> does, and returns
    /// its id as soon as the server has stored it: <see cref="GetCallAsync"/> gets the answer by
    /// the id, from this process or another one (after a restart of the caller).
    /// </summary>
    /// <returns>The call's id (<c>call_…</c>).</returns>
    /// <exception cref="ShepherdApiException">When the server refuses the call.</exception>
    /// <exception cref="NotSupportedException">On the OpenAI and Anthropic APIs, which have no such calls.</exception>
    public Task<string> StartCallAsync(string url, JsonObject body, TimeSpan deadline, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(url);
        ArgumentNullException.ThrowIfNull(body);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(deadline, TimeSpan.Zero);
        return _backend.StartCallAsync(url, body, deadline, cancellationToken);
    }

    /// <summary>
    /// The answer of the call <paramref name="callId"/> once it is in: each look is held by the
    /// server up to a minute (<c>GET /v1/calls/{id}</c> with <c>Prefer: wait=</c>), so this returns
    /// as soon as the answer is in. A server it cannot reach is tried again, backed off as a retry
    /// is, for up to <see cref="ShepherdClientOptions.WaitOutageTolerance"/>; the first look is an
    /// ordinary call, so a server never reached fails at once. The server ends the call at its
    /// deadline (504, <c>deadline_exceeded</c>, when it could not be sent in time), so the wait is
    /// bounded by it; <paramref name="cancellationToken"/> stops only the waiting.
    /// </summary>
    /// <returns>The provider's answer, with the call's id.</returns>
    /// <exception cref="ShepherdApiException">
    /// 404 (<c>not_found</c>) for an id the key cannot see; the provider's refusal or failure, or the
    /// server's end of the call (cancelled, deadline passed), with <see cref="ShepherdApiException.CallId"/> set.
    /// </exception>
    /// <exception cref="NotSupportedException">On the OpenAI and Anthropic APIs, which have no such calls.</exception>
    public Task<CallAnswer> GetCallAsync(string callId, CancellationToken cancellationToken = default) =>
        AnswerAsync(Checked(callId), CallKind.Repeatable, cancellationToken);

    /// <summary>Looks at a call until its answer is in; the first look is of kind <paramref name="first"/>, the rest are looks that ride out an outage.</summary>
    private async Task<CallAnswer> AnswerAsync(string callId, CallKind first, CancellationToken cancellationToken)
    {
        var outage = new Outage(this);
        for (var kind = first; ; kind = CallKind.Look)
        {
            try
            {
                if (await _backend.LookAtCallAsync(callId, kind, cancellationToken) is { } answer)
                {
                    return answer;
                }

                outage.Over();
            }
            catch (ShepherdApiException ex) when (ex.IsTransient && ex.CallId is null && kind == CallKind.Look)
            {
                if (outage.Next() is not { } pause)
                {
                    throw;
                }

                await Task.Delay(pause, Options.TimeProvider, cancellationToken);
            }
        }
    }

    /// <summary>
    /// How long <see cref="WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/> waits without a timeout: 10 minutes plus half a
    /// second per request, and no longer than the batch's completion window (plus 10 minutes).
    /// </summary>
    public TimeSpan DefaultTimeout(Batch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var bySize = TimeSpan.FromMinutes(10) + TimeSpan.FromSeconds(batch.Total * 0.5);
        if (batch.ExpiresAt is { } expires)
        {
            var byWindow = expires - Options.TimeProvider.GetUtcNow() + TimeSpan.FromMinutes(10);
            return byWindow < bySize ? byWindow : bySize;
        }

        return bySize;
    }

    /// <summary>
    /// The results of an ended batch, streamed a page at a time: memory stays flat however large
    /// the batch. A Shepherd server gives them in input order; the OpenAI API gives the successes
    /// first. A batch still running throws <see cref="BatchNotEndedException"/> on every backend.
    /// </summary>
    public async IAsyncEnumerable<BatchResult> GetResultsAsync(string batchId, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var batch = await EndedAsync(Checked(batchId), cancellationToken);
        await foreach (var result in _backend.ResultsAsync(batch, cancellationToken))
        {
            yield return result;
        }
    }

    /// <summary>The results of <paramref name="ended"/>, a batch a wait has just seen end: no second look at it.</summary>
    internal IAsyncEnumerable<BatchResult> ResultsOfEnded(Batch ended, CancellationToken cancellationToken) => _backend.ResultsAsync(ended, cancellationToken);

    /// <summary>
    /// The result of one request of an ended batch, or null when the batch has no such custom id.
    /// A batch still running throws <see cref="BatchNotEndedException"/> on every backend.
    /// </summary>
    public async Task<BatchResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(customId);
        return await _backend.ResultAsync(await EndedAsync(Checked(batchId), cancellationToken), customId, cancellationToken);
    }

    /// <summary>Writes every result line to <paramref name="path"/> (JSONL), streamed; returns the number of lines.</summary>
    public async Task<long> ExportResultsAsync(string batchId, string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var batch = await EndedAsync(Checked(batchId), cancellationToken);
        var partial = path + ".partial";
        long lines = 0;
        await using (var output = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, FileOptions.Asynchronous))
        await using (var json = new Utf8JsonWriter(output))
        {
            await foreach (var result in _backend.ResultsAsync(batch, cancellationToken))
            {
                result.Line.WriteTo(json);
                await json.FlushAsync(cancellationToken);
                json.Reset();
                output.WriteByte((byte)'\n');
                lines++;
            }
        }

        // The file appears whole or not at all.
        File.Move(partial, path, overwrite: true);
        return lines;
    }

    /// <summary>
    /// Creates a batch of the requests that failed or expired in the ended batch
    /// <paramref name="batchId"/>, with the same custom ids and bodies, linked to it by the
    /// metadata <c>retry_of</c>, and returns it; returns null when nothing failed or expired.
    /// Asking twice returns the same retry batch. A batch still running throws
    /// <see cref="BatchNotEndedException"/>; the Anthropic API, which keeps no request bodies,
    /// throws <see cref="NotSupportedException"/> when there is something to retry.
    /// </summary>
    public async Task<Batch?> RetryFailedAsync(string batchId, CancellationToken cancellationToken = default) =>
        await _backend.RetryFailedAsync(await EndedAsync(Checked(batchId), cancellationToken), "retry-of-" + batchId, cancellationToken);

    /// <summary>Releases the HTTP client, when the client made its own; calls made after this throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _pipeline.Dispose();

    private static TimeSpan? Eta((DateTimeOffset At, long Finished) first, Batch batch, DateTimeOffset now)
    {
        var done = batch.Finished - first.Finished;
        if (batch.HasEnded)
        {
            return TimeSpan.Zero;
        }

        return done <= 0 || now <= first.At ? null : (now - first.At) / done * (batch.Total - batch.Finished);
    }

    private async Task<Batch> EndedAsync(string batchId, CancellationToken cancellationToken)
    {
        var batch = await GetBatchAsync(batchId, cancellationToken);
        return batch.HasEnded ? batch : throw new BatchNotEndedException(batch);
    }

    private static string Checked(string batchId, [CallerArgumentExpression(nameof(batchId))] string? name = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(batchId, name);
        return batchId;
    }

    /// <summary>
    /// A server that cannot be reached by a wait's looks: since when, and how long to pause before
    /// the next look, backed off as a retry is, so a server coming back is found soon and a dead
    /// one is not hammered.
    /// </summary>
    private sealed class Outage(ShepherdClient client)
    {
        private int _failures;

        /// <summary>When the looks began to fail; null while they succeed.</summary>
        public DateTimeOffset? Since { get; private set; }

        /// <summary>A look succeeded: the outage, if any, is over.</summary>
        public void Over()
        {
            Since = null;
            _failures = 0;
        }

        /// <summary>A look failed: the pause before the next one, or null once the looks have failed for <see cref="ShepherdClientOptions.WaitOutageTolerance"/>.</summary>
        public TimeSpan? Next()
        {
            var now = client.Options.TimeProvider.GetUtcNow();
            Since ??= now;
            return now - Since >= client.Options.WaitOutageTolerance ? null : client._pipeline.Backoff(_failures++, null);
        }
    }

    private static string NewIdempotencyKey() => "shepherd-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
}

/// <summary>A batch known by its id: rebuilt from the id alone, in any process.</summary>
public sealed class BatchHandle
{
    private readonly IShepherdClient _client;

    internal BatchHandle(IShepherdClient client, string id)
    {
        _client = client;
        Id = id;
    }

    /// <summary>The batch id.</summary>
    public string Id { get; }

    /// <summary>The batch as the server describes it now.</summary>
    public Task<Batch> GetAsync(CancellationToken cancellationToken = default) => _client.GetBatchAsync(Id, cancellationToken);

    /// <summary>Waits for the batch to end; see <see cref="ShepherdClient.WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/>.</summary>
    public Task<BatchCompletion> WaitAsync(CancellationToken cancellationToken) => _client.WaitForCompletionAsync(Id, null, null, cancellationToken);

    /// <summary>Waits for the batch to end; see <see cref="ShepherdClient.WaitForCompletionAsync(string, IProgress{BatchProgress}?, TimeSpan?, CancellationToken)"/>.</summary>
    public Task<BatchCompletion> WaitAsync(IProgress<BatchProgress>? progress = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        _client.WaitForCompletionAsync(Id, progress, timeout, cancellationToken);

    /// <summary>The results, streamed.</summary>
    public IAsyncEnumerable<BatchResult> ResultsAsync(CancellationToken cancellationToken = default) => _client.GetResultsAsync(Id, cancellationToken);

    /// <summary>Writes the results to a JSONL file, streamed.</summary>
    public Task<long> ExportResultsAsync(string path, CancellationToken cancellationToken = default) => _client.ExportResultsAsync(Id, path, cancellationToken);

    /// <summary>Cancels the batch.</summary>
    public Task<Batch> CancelAsync(CancellationToken cancellationToken = default) => _client.CancelBatchAsync(Id, cancellationToken);

    /// <summary>A new batch of the requests that failed, or null when none did.</summary>
    public Task<Batch?> RetryFailedAsync(CancellationToken cancellationToken = default) => _client.RetryFailedAsync(Id, cancellationToken);

    /// <summary>The batch id.</summary>
    public override string ToString() => Id;
}
