using System.Text.Json;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages.Batches;
using Anthropic.Models.Messages;
using Anthropic.Models;
using Anthropic;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The Message Batches door driven by the official Anthropic .NET SDK, used the way its
/// documentation shows: no hand-built requests, no tolerance for a shape the SDK would reject.
/// </summary>
public sealed class AnthropicSdkTests
{
    private const string ModelName = "claude-sonnet-4-5";

    /// <summary>Five prompt tokens by the simulator's estimate (a quarter token a character, plus four for one message).</summary>
    private const string ShortPrompt = "hi";

    /// <summary>Nineteen prompt tokens by the same estimate: over <see cref="Context"/>, a permanent 400 upstream.</summary>
    private const string LongPrompt = "Please summarise this long review of a rather ordinary hotel.";

    /// <summary>
    /// Room for <see cref="ShortPrompt"/> but not <see cref="LongPrompt"/>. Not 3: every one-message
    /// request is at least 4 tokens to the simulator, so 3 would fail them all.
    /// </summary>
    private const int Context = 10;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Two requests per second: a batch of a few dozen stays in progress for seconds, long enough to act on it.</summary>
    private static SimulatorOptions Slow => new() { Latency = TimeSpan.FromMilliseconds(2), RequestsPerMinute = 120 };

    public static TheoryData<string> BadCustomIds => ["has space", new string('x', 65), "", "semi;colon", "ümlaut"];

    [Fact]
    public async Task ABatch_RunsToTheEnd_AndItsResultsStreamBackTyped()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(2), ContextTokens = Context });
        using var client = Client(server);

        var created = await client.Messages.Batches.Create(new BatchCreateParams
        {
            Requests = [Ask("first"), Ask("too-long", LongPrompt), Ask("third")],
        }, Ct);

        Assert.StartsWith("msgbatch_", created.ID, StringComparison.Ordinal);
        Assert.Equal("message_batch", created.Type.GetString());
        Assert.Null(created.ArchivedAt);
        Assert.Null(created.CancelInitiatedAt);
        Assert.Equal(3, Total(created.RequestCounts));

        var ended = await WaitForAsync(client, created.ID, b => b.ProcessingStatus.Value() == ProcessingStatus.Ended);
        Assert.Equal((0L, 2L, 1L, 0L, 0L), Counts(ended.RequestCounts));
        Assert.Equal(created.CreatedAt, ended.CreatedAt);
        Assert.True(ended.EndedAt is { } endedAt && endedAt >= ended.CreatedAt, $"ended_at {ended.EndedAt} is not after created_at {ended.CreatedAt}");
        Assert.InRange(ended.ExpiresAt - ended.CreatedAt, TimeSpan.FromHours(24) - TimeSpan.FromSeconds(1), TimeSpan.FromHours(24) + TimeSpan.FromSeconds(1));
        Assert.True(Uri.TryCreate(ended.ResultsUrl, UriKind.Absolute, out var resultsUrl), $"results_url \"{ended.ResultsUrl}\" is not absolute");
        Assert.Equal(new Uri(server.BaseUrl, $"v1/messages/batches/{created.ID}/results"), resultsUrl);

        var results = new Dictionary<string, MessageBatchResult>();
        await foreach (var line in client.Messages.Batches.ResultsStreaming(created.ID, cancellationToken: Ct))
        {
            results.Add(line.CustomID, line.Result);
        }

        Assert.Equal(["first", "third", "too-long"], results.Keys.Order(StringComparer.Ordinal));
        foreach (var id in (string[])["first", "third"])
        {
            Assert.Equal(MessageBatchResultType.Succeeded, results[id].Type.Value());
            Assert.True(results[id].TryPickSucceeded(out var succeeded));
            Assert.Equal(ModelName, succeeded.Message.Model.Raw());
            Assert.Contains(succeeded.Message.Content, block => block.TryPickText(out var text) && text.Text.Length > 0);
            Assert.True(succeeded.Message.Usage.InputTokens > 0);
        }

        Assert.Equal(MessageBatchResultType.Errored, results["too-long"].Type.Value());
        Assert.True(results["too-long"].TryPickErrored(out var errored));
        Assert.Equal(ErrorObjectType.InvalidRequestError, errored.Error.Error.Type.Value());
        Assert.Contains("context", errored.Error.Error.Message, StringComparison.Ordinal);

        // results_url as given (the JS SDK's way), with the Anthropic header, serves the same lines as the fixed path.
        using var plain = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, resultsUrl);
        request.Headers.Add("x-api-key", RunningServer.Key);
        request.Headers.Add("anthropic-version", "2023-06-01");
        using var response = await plain.SendAsync(request, Ct);
        Assert.Equal(200, (int)response.StatusCode);
        var body = await response.Content.ReadAsStringAsync(Ct);
        var lines = body.EndsWith('\n') ? body[..^1].Split('\n') : body.Split('\n');
        Assert.DoesNotContain(lines, line => line.Trim().Length == 0);
        Assert.Equal(3, lines.Length);
        foreach (var line in lines)
        {
            using var parsed = JsonDocument.Parse(line);
            var customId = parsed.RootElement.GetProperty("custom_id").GetString()!;
            Assert.Equal(results[customId].Type.Raw(), parsed.RootElement.GetProperty("result").GetProperty("type").GetString());
        }

        Assert.Equal(body, await server.Http.GetStringAsync(new Uri($"/v1/messages/batches/{created.ID}/results", UriKind.Relative), Ct));
    }

    [Fact]
    public async Task Listing_PagesNewestFirst_AndSeesOnlyTheCallersBatches()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);
        using var other = Client(server, RunningServer.OtherKey);

        var ids = new List<string>();
        foreach (var name in (string[])["one", "two", "three"])
        {
            ids.Add((await client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask(name)] }, Ct)).ID);
        }

        var (newest, middle, oldest) = (ids[2], ids[1], ids[0]);

        var first = await client.Messages.Batches.List(new BatchListParams { Limit = 2 }, Ct);
        Assert.Equal([newest, middle], first.Items.Select(b => b.ID));
        Assert.True(first.HasNext());
        var second = await first.Next(Ct);
        Assert.Equal([oldest], second.Items.Select(b => b.ID));
        Assert.False(second.HasNext());

        var all = new List<string>();
        await foreach (var batch in first.Paginate(Ct))
        {
            all.Add(batch.ID);
        }

        Assert.Equal([newest, middle, oldest], all);

        var after = await client.Messages.Batches.List(new BatchListParams { Limit = 2, AfterID = newest }, Ct);
        Assert.Equal([middle, oldest], after.Items.Select(b => b.ID));
        Assert.False(after.HasNext());

        var before = await client.Messages.Batches.List(new BatchListParams { Limit = 1, BeforeID = oldest }, Ct);
        Assert.Equal([middle], before.Items.Select(b => b.ID));
        var beforeAll = await client.Messages.Batches.List(new BatchListParams { Limit = 5, BeforeID = oldest }, Ct);
        Assert.Equal([newest, middle], beforeAll.Items.Select(b => b.ID));

        var theirs = await other.Messages.Batches.List(cancellationToken: Ct);
        Assert.Empty(theirs.Items);
        Assert.False(theirs.HasNext());
        var notFound = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => other.Messages.Batches.Retrieve(oldest, cancellationToken: Ct));
        Assert.Equal(404, (int)notFound.StatusCode);
        Assert.Equal(ErrorType.NotFoundError, notFound.Type?.Value());
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => other.Messages.Batches.Cancel(oldest, cancellationToken: Ct));
        await Assert.ThrowsAsync<AnthropicNotFoundException>(() => other.Messages.Batches.Delete(oldest, cancellationToken: Ct));
    }

    [Fact]
    public async Task RequestCounts_WhileInProgress_CountEveryRequestProcessing_ThoughSomeHaveSucceeded()
    {
        await using var server = await RunningServer.StartAsync(Slow);
        using var client = Client(server);
        const int total = 30;
        var created = await CreateAndWaitForAsync(server, client, total, Shepherd.Engine.Model.ItemState.Succeeded);

        var running = await client.Messages.Batches.Retrieve(created.ID, cancellationToken: Ct);
        var listed = await client.Messages.Batches.List(new BatchListParams(), Ct);

        Assert.Equal(ProcessingStatus.InProgress, running.ProcessingStatus.Value());
        Assert.Equal((total, 0L, 0L, 0L, 0L), Counts(created.RequestCounts));
        Assert.Equal((total, 0L, 0L, 0L, 0L), Counts(running.RequestCounts));
        Assert.Equal((total, 0L, 0L, 0L, 0L), Counts(Assert.Single(listed.Items).RequestCounts));
    }

    [Fact]
    public async Task Cancel_WhileInProgress_GoesThroughCanceling_AndKeepsWhatFinished()
    {
        await using var server = await RunningServer.StartAsync(Slow);
        using var client = Client(server);
        const int total = 30;

        // Cancel once the dispatcher holds leased requests (at 120 a minute it holds them a while),
        // so there is something to wait for: a loaded machine may not have claimed any yet.
        var created = await CreateAndWaitForAsync(server, client, total, Shepherd.Engine.Model.ItemState.Leased);
        Assert.Equal(ProcessingStatus.InProgress, created.ProcessingStatus.Value());

        var canceling = await client.Messages.Batches.Cancel(created.ID, cancellationToken: Ct);
        Assert.Equal(created.ID, canceling.ID);
        Assert.Equal(ProcessingStatus.Canceling, canceling.ProcessingStatus.Value());
        Assert.Equal((total, 0L, 0L, 0L, 0L), Counts(canceling.RequestCounts));
        Assert.NotNull(canceling.CancelInitiatedAt);
        Assert.Null(canceling.ResultsUrl);

        var ended = await WaitForAsync(client, created.ID, b => b.ProcessingStatus.Value() == ProcessingStatus.Ended);
        var counts = ended.RequestCounts;
        Assert.True(counts.Canceled > 0, $"nothing was canceled: {counts}");
        Assert.Equal(0, counts.Processing);
        Assert.Equal(total, counts.Succeeded + counts.Canceled + counts.Errored);
        Assert.Equal(canceling.CancelInitiatedAt, ended.CancelInitiatedAt);
        Assert.True(ended.EndedAt >= ended.CancelInitiatedAt, $"ended_at {ended.EndedAt} before cancel_initiated_at {ended.CancelInitiatedAt}");
        Assert.NotNull(ended.ResultsUrl);

        var again = await client.Messages.Batches.Cancel(created.ID, cancellationToken: Ct);
        Assert.Equal(ProcessingStatus.Ended, again.ProcessingStatus.Value());

        var types = new List<MessageBatchResultType>();
        await foreach (var line in client.Messages.Batches.ResultsStreaming(created.ID, cancellationToken: Ct))
        {
            types.Add(line.Result.Type.Value());
            if (line.Result.TryPickSucceeded(out var succeeded))
            {
                Assert.NotEmpty(succeeded.Message.Content);
            }
        }

        Assert.Equal(total, types.Count);
        Assert.Equal(counts.Canceled, types.Count(t => t == MessageBatchResultType.Canceled));
        Assert.Equal(counts.Succeeded, types.Count(t => t == MessageBatchResultType.Succeeded));
    }

    [Fact]
    public async Task Delete_IsRefusedWhileRunning_AndRemovesTheBatchOnceEnded()
    {
        await using var server = await RunningServer.StartAsync(Slow);
        using var client = Client(server);

        var created = await client.Messages.Batches.Create(new BatchCreateParams
        {
            Requests = [.. Enumerable.Range(0, 20).Select(i => Ask($"r{i}"))],
        }, Ct);

        var refused = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Batches.Delete(created.ID, cancellationToken: Ct));
        Assert.Equal(400, (int)refused.StatusCode);
        Assert.Equal(ErrorType.InvalidRequestError, refused.Type?.Value());
        Assert.Contains(created.ID, refused.ApiMessage, StringComparison.Ordinal);
        Assert.Equal(ProcessingStatus.InProgress, (await client.Messages.Batches.Retrieve(created.ID, cancellationToken: Ct)).ProcessingStatus.Value());

        await client.Messages.Batches.Cancel(created.ID, cancellationToken: Ct);
        await WaitForAsync(client, created.ID, b => b.ProcessingStatus.Value() == ProcessingStatus.Ended);

        var deleted = await client.Messages.Batches.Delete(created.ID, cancellationToken: Ct);
        Assert.Equal(created.ID, deleted.ID);
        Assert.Equal("message_batch_deleted", deleted.Type.GetString());

        var gone = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Batches.Retrieve(created.ID, cancellationToken: Ct));
        Assert.Equal(ErrorType.NotFoundError, gone.Type?.Value());
        Assert.Empty((await client.Messages.Batches.List(cancellationToken: Ct)).Items);
    }

    [Theory]
    [MemberData(nameof(BadCustomIds))]
    public async Task ABadCustomId_IsABadRequest_AndCreatesNothing(string customId)
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);

        var refused = await Assert.ThrowsAsync<AnthropicBadRequestException>(() =>
            client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask("fine"), Ask(customId)] }, Ct));

        Assert.Equal(400, (int)refused.StatusCode);
        Assert.Equal(ErrorType.InvalidRequestError, refused.Type?.Value());
        Assert.Contains("custom_id", refused.ApiMessage, StringComparison.Ordinal);
        Assert.Empty((await client.Messages.Batches.List(cancellationToken: Ct)).Items);
    }

    [Fact]
    public async Task ADuplicateCustomId_IsABadRequest()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server);

        var refused = await Assert.ThrowsAsync<AnthropicBadRequestException>(() =>
            client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask("same"), Ask("other"), Ask("same")] }, Ct));

        Assert.Equal(ErrorType.InvalidRequestError, refused.Type?.Value());
        Assert.Contains("\"same\"", refused.ApiMessage, StringComparison.Ordinal);
        Assert.Contains("already used", refused.ApiMessage, StringComparison.Ordinal);
        Assert.Empty((await client.Messages.Batches.List(cancellationToken: Ct)).Items);
    }

    [Fact]
    public async Task AnUnknownKey_IsAnAuthenticationError()
    {
        await using var server = await RunningServer.StartAsync();
        using var client = Client(server, "sk-not-a-tenant");

        var listing = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => client.Messages.Batches.List(cancellationToken: Ct));
        var creating = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() =>
            client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask("a")] }, Ct));

        Assert.Equal(401, (int)listing.StatusCode);
        Assert.Equal(ErrorType.AuthenticationError, listing.Type?.Value());
        Assert.Equal(ErrorType.AuthenticationError, creating.Type?.Value());
        Assert.Contains("x-api-key", listing.ApiMessage, StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(listing.RequestID), "no request-id header on the error");
    }

    /// <summary>A client as a user would build one, pointed at the server; no retries, so each call is one request.</summary>
    private static AnthropicClient Client(RunningServer server, string key = RunningServer.Key) => new(new ClientOptions
    {
        BaseUrl = server.BaseUrl.ToString().TrimEnd('/'),
        ApiKey = key,
        MaxRetries = 0,
        ResponseValidation = true,
    });

    private static Request Ask(string customId, string prompt = ShortPrompt) => new()
    {
        CustomID = customId,
        Params = new Params { Model = ModelName, MaxTokens = 16, Messages = [new UserMessageParam(prompt)] },
    };

    /// <summary>Creates a batch of <paramref name="total"/> requests and waits until one of them is in <paramref name="state"/>.</summary>
    private static async Task<MessageBatch> CreateAndWaitForAsync(RunningServer server, AnthropicClient client, int total, Shepherd.Engine.Model.ItemState state)
    {
        var created = await client.Messages.Batches.Create(new BatchCreateParams
        {
            Requests = [.. Enumerable.Range(0, total).Select(i => Ask($"r{i}"))],
        }, Ct);
        await Poll.UntilAsync(async () => await server.Store.ReadResultsAsync(created.ID, 0, Ct).AnyAsync(r => r.State == state, Ct), cancellationToken: Ct);
        return created;
    }

    private static long Total(MessageBatchRequestCounts c) => c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired;

    private static (long Processing, long Succeeded, long Errored, long Canceled, long Expired) Counts(MessageBatchRequestCounts c) =>
        (c.Processing, c.Succeeded, c.Errored, c.Canceled, c.Expired);

    /// <summary>Polls the batch through the SDK until <paramref name="done"/> holds; gives up after 20 seconds.</summary>
    private static Task<MessageBatch> WaitForAsync(AnthropicClient client, string id, Func<MessageBatch, bool> done) =>
        Poll.UntilAsync(() => client.Messages.Batches.Retrieve(id, cancellationToken: Ct), done, TimeSpan.FromSeconds(20), Ct);
}
