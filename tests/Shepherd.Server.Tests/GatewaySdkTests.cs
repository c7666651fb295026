using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;
using Shepherd.Engine.Dispatch;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The realtime door with the official OpenAI and Anthropic .NET SDKs pointed at Shepherd: plain
/// and streamed calls answer what the provider answers when called directly, and the errors are
/// the SDKs' typed ones.
/// </summary>
public sealed class GatewaySdkTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly ChatMessage[] Review = [new UserChatMessage("Rate this review: it works well.")];

    private static OpenAIClient OpenAI(Uri baseUrl, string key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(baseUrl, "v1"), RetryPolicy = new ClientRetryPolicy(0) });

    private static AnthropicClient Anthropic(Uri baseUrl, string key) =>
        new(new ClientOptions { BaseUrl = baseUrl.ToString().TrimEnd('/'), ApiKey = key, MaxRetries = 0 });

    private static long CostOf(RunningServer server, string tenant) =>
        server.Server.Services.GetRequiredService<Dispatcher>().RealtimeCost.GetValueOrDefault(tenant).CostNanos;

    [Fact]
    public async Task AChatCompletion_ThroughShepherd_IsTheProvidersAnswer_AndItsCostCountsForTheTenant()
    {
        await using var server = await RunningServer.StartAsync();
        var direct = await OpenAI(server.Simulator.BaseUrl, "sk-simulated").GetChatClient("gpt-4o-mini").CompleteChatAsync(Review, new ChatCompletionOptions { MaxOutputTokenCount = 20 }, Ct);

        var through = await OpenAI(server.BaseUrl, RunningServer.Key).GetChatClient("gpt-4o-mini").CompleteChatAsync(Review, new ChatCompletionOptions { MaxOutputTokenCount = 20 }, Ct);

        Assert.Equal(direct.Value.Content[0].Text, through.Value.Content[0].Text);
        Assert.Equal(direct.Value.Usage.OutputTokenCount, through.Value.Usage.OutputTokenCount);
        var response = through.GetRawResponse();
        Assert.StartsWith("req_", response.Headers.TryGetValue("x-request-id", out var id) ? id : "", StringComparison.Ordinal);
        Assert.True(response.Headers.TryGetValue("x-shepherd-request-id", out _), "Shepherd's own id stays beside the provider's");
        Assert.True(CostOf(server, "tenant-one") > 0);
        Assert.Single(server.Server.Services.GetRequiredService<Dispatcher>().RealtimeCost);
    }

    [Fact]
    public async Task EmbeddingsAndLegacyCompletions_PassThrough()
    {
        await using var server = await RunningServer.StartAsync();
        var client = OpenAI(server.BaseUrl, RunningServer.Key);

        var embedding = await client.GetEmbeddingClient("text-embedding-3-small").GenerateEmbeddingAsync("a review", cancellationToken: Ct);

        // The SDK asks for base64 and decodes it: the simulator's eight dimensions, a unit vector.
        var vector = embedding.Value.ToFloats().ToArray();
        Assert.Equal(8, vector.Length);
        Assert.InRange(Math.Sqrt(vector.Sum(v => (double)v * v)), 0.999, 1.001);
    }

    [Fact]
    public async Task AStreamedChatCompletion_ComesInPieces_AsDirect_WithItsUsage()
    {
        await using var server = await RunningServer.StartAsync();
        var direct = await StreamAsync(OpenAI(server.Simulator.BaseUrl, "sk-simulated"));

        var through = await StreamAsync(OpenAI(server.BaseUrl, RunningServer.Key));

        Assert.Equal(direct.Text, through.Text);
        Assert.Equal(direct.Updates, through.Updates);
        Assert.NotNull(through.Usage);
        Assert.Equal(direct.Usage!.OutputTokenCount, through.Usage.OutputTokenCount);
        // Priced once the relay has ended, by the usage its events carried.
        await Poll.UntilAsync(() => Task.FromResult(CostOf(server, "tenant-one") > 0), TimeSpan.FromSeconds(10), Ct);
    }

    private static async Task<(string Text, int Updates, ChatTokenUsage? Usage)> StreamAsync(OpenAIClient client)
    {
        var text = new StringBuilder();
        var updates = 0;
        ChatTokenUsage? usage = null;
        await foreach (var update in client.GetChatClient("gpt-4o-mini").CompleteChatStreamingAsync(Review, new ChatCompletionOptions { MaxOutputTokenCount = 25 }, Ct))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        return (text.ToString(), updates, usage);
    }

    [Fact]
    public async Task AnAnthropicMessage_PlainAndStreamed_IsTheProvidersAnswer()
    {
        await using var server = await RunningServer.StartAsync();
        var request = new MessageCreateParams { Model = "claude-haiku-4-5", MaxTokens = 30, Messages = [new UserMessageParam("Rate this review: it works well.")] };
        var direct = await Anthropic(server.Simulator.BaseUrl, "sk-simulated").Messages.Create(request, Ct);

        var directStream = await StreamAsync(Anthropic(server.Simulator.BaseUrl, "sk-simulated"), request);

        var through = await Anthropic(server.BaseUrl, RunningServer.Key).Messages.Create(request, Ct);
        var throughStream = await StreamAsync(Anthropic(server.BaseUrl, RunningServer.Key), request);

        Assert.Equal(TextOf(direct), TextOf(through));
        Assert.Equal(directStream, throughStream);
        Assert.True(throughStream.Output > 0);
    }

    private static async Task<(string Text, long? Output)> StreamAsync(AnthropicClient client, MessageCreateParams request)
    {
        var text = new StringBuilder();
        long? output = null;
        await foreach (var streamed in client.Messages.CreateStreaming(request, Ct))
        {
            if (streamed.TryPickContentBlockDelta(out var block) && block.Delta.TryPickText(out var delta))
            {
                text.Append(delta.Text);
            }

            if (streamed.TryPickDelta(out var end))
            {
                output = end.Usage.OutputTokens;
            }
        }

        return (text.ToString(), output);
    }

    private static string TextOf(Message message) => string.Concat(message.Content.Select(block => block.TryPickText(out var text) ? text.Text : ""));

    [Fact]
    public async Task AWrongKey_IsTheSdksTyped401_OnBothDialects()
    {
        await using var server = await RunningServer.StartAsync();

        var openAI = await Assert.ThrowsAsync<ClientResultException>(() => OpenAI(server.BaseUrl, "sk-wrong").GetChatClient("gpt-4o-mini").CompleteChatAsync(Review, cancellationToken: Ct));
        var anthropic = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() =>
            Anthropic(server.BaseUrl, "sk-wrong").Messages.Create(new MessageCreateParams { Model = "claude-haiku-4-5", MaxTokens = 10, Messages = [new UserMessageParam("hi")] }, Ct));

        Assert.Equal(401, openAI.Status);
        Assert.NotNull(anthropic);
        Assert.Equal(0, server.Simulator.Provider.Stats().Requests);
    }

    [Fact]
    public async Task AModelNoUpstreamServes_Is404_AndATenantOverItsRate_Is429WithRetryAfter()
    {
        await using var server = await RunningServer.StartAsync(
            upstream: u => u.Models = ["gpt-4o-mini"],
            tune: options => options.GatewayKeys = [new GatewayKey(new Engine.Upstreams.Secret(RunningServer.Key), "tenant-one") { Limits = new TenantLimits(RequestsPerMinute: 60) }]);
        var client = OpenAI(server.BaseUrl, RunningServer.Key);

        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => client.GetChatClient("no-such-model").CompleteChatAsync(Review, cancellationToken: Ct));
        var limited = await Assert.ThrowsAsync<ClientResultException>(() => client.GetChatClient("gpt-4o-mini").CompleteChatAsync(Review, cancellationToken: Ct));

        Assert.Equal(404, unknown.Status);
        Assert.Contains("model_not_served", unknown.GetRawResponse()!.Content.ToString(), StringComparison.Ordinal);
        Assert.Equal(429, limited.Status);
        Assert.True(limited.GetRawResponse()!.Headers.TryGetValue("retry-after", out _));
    }

    [Fact]
    public async Task TransientFailures_AreTriedAgainWithinTheCallersTimeout()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(1), Error503Rate = 0.4 });
        var client = OpenAI(server.BaseUrl, RunningServer.Key).GetChatClient("gpt-4o-mini");

        var attempts = new List<int>();
        for (var i = 0; i < 10; i++)
        {
            var answer = await client.CompleteChatAsync([new UserChatMessage($"Review {i}: fine.")], cancellationToken: Ct);
            attempts.Add(int.Parse(answer.GetRawResponse().Headers.TryGetValue("x-shepherd-attempts", out var n) ? n! : "0", System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.Contains(attempts, a => a > 1);
        Assert.All(attempts, a => Assert.InRange(a, 1, 5));
    }
}
