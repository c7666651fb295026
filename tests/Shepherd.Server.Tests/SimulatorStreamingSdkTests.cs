using System.ClientModel;
using System.Text;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using OpenAI;
using OpenAI.Chat;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Server.Tests;

/// <summary>
/// The simulator's streamed answers (<c>"stream": true</c>) on a real <see cref="SimulatorServer"/>
/// on 127.0.0.1, read by the official OpenAI and Anthropic .NET SDKs: the text comes in pieces and
/// the usage says how long it is, as each provider reports it.
/// </summary>
public sealed class SimulatorStreamingSdkTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>The simulator's text has one word per output token.</summary>
    private static int Words(string text) => text.TrimEnd('.').Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    [Fact]
    public async Task TheOpenAISdk_StreamsAChatCompletion_InPieces_WithItsUsage()
    {
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions());
        var chat = new OpenAIClient(new ApiKeyCredential("sk-simulated"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseUrl, "v1") }).GetChatClient("gpt-4o-mini");

        var text = new StringBuilder();
        var updates = 0;
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Rate this review: it works well.")], new ChatCompletionOptions { MaxOutputTokenCount = 30 }, Ct))
        {
            updates++;
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        Assert.NotNull(usage);
        Assert.True(updates > 2, $"{updates} updates");
        Assert.Equal(usage.OutputTokenCount, Words(text.ToString()));
        Assert.True(usage.InputTokenCount > 0);
        Assert.NotNull(finish);
    }

    [Fact]
    public async Task TheAnthropicSdk_StreamsAMessage_InPieces_WithItsUsage()
    {
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions());
        var client = new AnthropicClient(new ClientOptions { BaseUrl = server.BaseUrl.ToString().TrimEnd('/'), ApiKey = "sk-simulated" });

        var text = new StringBuilder();
        long? input = null, output = null;
        await foreach (var streamed in client.Messages.CreateStreaming(
            new MessageCreateParams { Model = "claude-haiku-4-5", MaxTokens = 30, Messages = [new UserMessageParam("Rate this review: it works well.")] }, Ct))
        {
            if (streamed.TryPickStart(out var start))
            {
                input = start.Message.Usage.InputTokens;
            }

            if (streamed.TryPickContentBlockDelta(out var block) && block.Delta.TryPickText(out var delta))
            {
                text.Append(delta.Text);
            }

            if (streamed.TryPickDelta(out var end))
            {
                output = end.Usage.OutputTokens;
            }
        }

        Assert.True(input > 0);
        Assert.Equal(output, Words(text.ToString()));
    }
}
