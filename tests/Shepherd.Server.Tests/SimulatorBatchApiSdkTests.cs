using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models;
using Anthropic.Models.Messages;
using Anthropic.Models.Messages.Batches;
using OpenAI;
using OpenAI.Batch;
using OpenAI.Files;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The simulator's own batch APIs on a real <see cref="SimulatorServer"/> on 127.0.0.1, driven by
/// the official OpenAI and Anthropic .NET SDKs: what they send is served, and what it answers they read.
/// </summary>
public sealed class SimulatorBatchApiSdkTests
{
    private const string Key = "sk-simulated";
    private const string ChatCompletions = "/v1/chat/completions";

    /// <summary>Over this many prompt tokens, a line is refused 400 context_length_exceeded.</summary>
    private const int Context = 30;

    private static readonly string LongPrompt = string.Join(' ', Enumerable.Repeat("verbose", 100));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static RequestOptions Options => new() { CancellationToken = Ct };

    [Fact]
    public async Task TheOpenAISdk_UploadsCreatesPollsAndDownloads()
    {
        await using var server = await StartAsync(new SimulatorOptions { ApiKey = Key, BatchLatency = TimeSpan.FromMilliseconds(300), ContextTokens = Context });
        var client = new OpenAIClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1"), RetryPolicy = new ClientRetryPolicy(0) });
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        var input = string.Concat(new[] { Line("first", "hi"), Line("too-long", LongPrompt), Line("third", "yo") }.Select(l => l + "\n"));

        OpenAIFile uploaded = await files.UploadFileAsync(BinaryData.FromString(input), "requests.jsonl", FileUploadPurpose.Batch);
        var operation = await CreateBatchAsync(batches, uploaded.Id);
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(30));
            await operation.WaitForCompletionAsync(timeout.Token);
        }

        Assert.StartsWith("file-", uploaded.Id, StringComparison.Ordinal);
        Assert.Equal(("requests.jsonl", FilePurpose.Batch, (long)input.Length), (uploaded.Filename, uploaded.Purpose, uploaded.SizeInBytesLong));
        var ended = OpenAISdkTests.Json(operation.GetRawResponse());
        Assert.Equal("completed", ended.GetProperty("status").GetString());
        var counts = ended.GetProperty("request_counts");
        Assert.Equal((3, 2, 1), (counts.GetProperty("total").GetInt32(), counts.GetProperty("completed").GetInt32(), counts.GetProperty("failed").GetInt32()));

        var job = (BatchJob)await batches.GetBatchAsync(operation.BatchId, Options);
        Assert.Equal((operation.BatchId, ChatCompletions, uploaded.Id), (job.Id, job.Endpoint, job.InputFileId));
        Assert.Equal("sdk", job.Metadata["run"]);
        Assert.NotNull(job.InProgressAt);
        Assert.NotNull(job.CompletedAt);
        Assert.Null(job.CancelledAt);

        OpenAIFile outputFile = await files.GetFileAsync(job.OutputFileId, Ct);
        Assert.Equal(FilePurpose.BatchOutput, outputFile.Purpose);
        var output = OpenAISdkTests.Lines(await files.DownloadFileAsync(job.OutputFileId, Ct));
        Assert.Equal(["first", "third"], output.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.All(output, line => Assert.Equal("gpt-4o-mini", line.GetProperty("response").GetProperty("body").GetProperty("model").GetString()));
        var error = Assert.Single(OpenAISdkTests.Lines(await files.DownloadFileAsync(job.ErrorFileId, Ct)));
        Assert.Equal(("too-long", 400), (error.GetProperty("custom_id").GetString(), error.GetProperty("response").GetProperty("status_code").GetInt32()));
    }

    [Fact]
    public async Task TheOpenAISdk_CancelsABatch_AndReadsItsCancelledLines()
    {
        await using var server = await StartAsync(new SimulatorOptions { BatchLatency = TimeSpan.FromHours(1) });
        var client = new OpenAIClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1"), RetryPolicy = new ClientRetryPolicy(0) });
        var files = client.GetOpenAIFileClient();
        var batches = client.GetBatchClient();
        OpenAIFile uploaded = await files.UploadFileAsync(
            BinaryData.FromString(string.Concat(Enumerable.Range(0, 5).Select(i => Line($"r{i}", $"hi {i}") + "\n"))), "slow.jsonl", FileUploadPurpose.Batch);
        var operation = await CreateBatchAsync(batches, uploaded.Id);

        var cancelled = OpenAISdkTests.Json((await operation.CancelAsync(Options)).GetRawResponse());
        var job = (BatchJob)await batches.GetBatchAsync(operation.BatchId, Options);

        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        Assert.NotNull(job.CancellingAt);
        Assert.NotNull(job.CancelledAt);
        var errors = OpenAISdkTests.Lines(await files.DownloadFileAsync(job.ErrorFileId, Ct));
        Assert.Equal(cancelled.GetProperty("request_counts").GetProperty("failed").GetInt32(), errors.Count);
        Assert.All(errors, line => Assert.Equal("batch_cancelled", line.GetProperty("error").GetProperty("code").GetString()));
    }

    [Fact]
    public async Task TheAnthropicSdk_CreatesPollsAndStreamsTypedResults_AndPages()
    {
        // Long enough that the create's own answer (read on a busy machine too) comes while the batch is in progress.
        await using var server = await StartAsync(new SimulatorOptions { ApiKey = Key, BatchLatency = TimeSpan.FromSeconds(3), ContextTokens = Context });
        using var client = Anthropic(server);

        var created = await client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask("first"), Ask("too-long", LongPrompt), Ask("third")] }, Ct);
        var ended = await Poll.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID, cancellationToken: Ct),
            b => b.ProcessingStatus.Value() == ProcessingStatus.Ended, TimeSpan.FromSeconds(30), Ct);
        var results = new Dictionary<string, MessageBatchResult>();
        await foreach (var line in client.Messages.Batches.ResultsStreaming(created.ID, cancellationToken: Ct))
        {
            results.Add(line.CustomID, line.Result);
        }

        Assert.StartsWith("msgbatch_", created.ID, StringComparison.Ordinal);
        Assert.Equal(ProcessingStatus.InProgress, created.ProcessingStatus.Value());
        Assert.Equal(3, created.RequestCounts.Processing);
        Assert.Equal((0L, 2L, 1L, 0L, 0L), (ended.RequestCounts.Processing, ended.RequestCounts.Succeeded, ended.RequestCounts.Errored, ended.RequestCounts.Canceled, ended.RequestCounts.Expired));
        Assert.True(ended.EndedAt >= ended.CreatedAt);
        Assert.Equal(new Uri(server.BaseUrl, $"v1/messages/batches/{created.ID}/results"), new Uri(ended.ResultsUrl!));
        Assert.True(results["first"].TryPickSucceeded(out var succeeded));
        Assert.Equal("claude-haiku-4-5", succeeded.Message.Model.Raw());
        Assert.Contains(succeeded.Message.Content, block => block.TryPickText(out var text) && text.Text.Length > 0);
        Assert.True(results["too-long"].TryPickErrored(out var errored));
        Assert.Equal(ErrorObjectType.InvalidRequestError, errored.Error.Error.Type.Value());
        Assert.Equal(MessageBatchResultType.Succeeded, results["third"].Type.Value());

        var second = await client.Messages.Batches.Create(new BatchCreateParams { Requests = [Ask("again")] }, Ct);
        var page = await client.Messages.Batches.List(new BatchListParams { Limit = 1 }, Ct);
        Assert.Equal([second.ID], page.Items.Select(b => b.ID));
        Assert.True(page.HasNext());
        Assert.Equal([created.ID], (await page.Next(Ct)).Items.Select(b => b.ID));
    }

    [Fact]
    public async Task TheAnthropicSdk_CancelsABatch_ThroughCanceling()
    {
        await using var server = await StartAsync(new SimulatorOptions { BatchLatency = TimeSpan.FromHours(1), BatchCancelLatency = TimeSpan.FromMilliseconds(300) });
        using var client = Anthropic(server);
        var created = await client.Messages.Batches.Create(new BatchCreateParams { Requests = [.. Enumerable.Range(0, 5).Select(i => Ask($"r{i}"))] }, Ct);

        var canceling = await client.Messages.Batches.Cancel(created.ID, cancellationToken: Ct);
        var ended = await Poll.UntilAsync(() => client.Messages.Batches.Retrieve(created.ID, cancellationToken: Ct),
            b => b.ProcessingStatus.Value() == ProcessingStatus.Ended, TimeSpan.FromSeconds(30), Ct);
        var types = new List<MessageBatchResultType>();
        await foreach (var line in client.Messages.Batches.ResultsStreaming(created.ID, cancellationToken: Ct))
        {
            types.Add(line.Result.Type.Value());
        }

        Assert.Equal(ProcessingStatus.Canceling, canceling.ProcessingStatus.Value());
        Assert.NotNull(canceling.CancelInitiatedAt);
        Assert.Null(canceling.ResultsUrl);
        Assert.Equal(canceling.CancelInitiatedAt, ended.CancelInitiatedAt);
        Assert.Equal(5, ended.RequestCounts.Canceled + ended.RequestCounts.Succeeded);
        Assert.Equal(ended.RequestCounts.Canceled, types.Count(t => t == MessageBatchResultType.Canceled));
        Assert.Equal(5, types.Count);
    }

    private static Task<SimulatorServer> StartAsync(SimulatorOptions options) => Simulators.StartHttpAsync(options);

    private static AnthropicClient Anthropic(SimulatorServer server) => new(new ClientOptions
    {
        BaseUrl = server.BaseUrl.ToString().TrimEnd('/'),
        ApiKey = Key,
        MaxRetries = 0,
        ResponseValidation = true,
    });

    private static Request Ask(string customId, string prompt = "hi") => new()
    {
        CustomID = customId,
        Params = new Params { Model = "claude-haiku-4-5", MaxTokens = 16, Messages = [new UserMessageParam(prompt)] },
    };

    private static string Line(string customId, string prompt) => JsonSerializer.Serialize(new
    {
        custom_id = customId,
        method = "POST",
        url = ChatCompletions,
        body = new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = prompt } } },
    });

    private static async Task<CreateBatchOperation> CreateBatchAsync(BatchClient batches, string fileId)
    {
        using var content = System.ClientModel.BinaryContent.Create(BinaryData.FromObjectAsJson(new
        {
            input_file_id = fileId,
            endpoint = ChatCompletions,
            completion_window = "24h",
            metadata = new Dictionary<string, string> { ["run"] = "sdk" },
        }));
        return await batches.CreateBatchAsync(content, waitUntilCompleted: false, Options);
    }
}
