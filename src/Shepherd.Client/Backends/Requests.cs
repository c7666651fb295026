using System.Text.Json.Nodes;

namespace Shepherd.Client.Backends;

/// <summary>Request bodies for APIs that take no prompts: a prompt becomes the endpoint's own body.</summary>
internal static class Requests
{
    /// <summary>The url of chat requests in the OpenAI dialect, and of a batch that names none.</summary>
    public const string ChatEndpoint = "/v1/chat/completions";

    /// <summary>The answer length asked for when a prompt goes to an API that requires one.</summary>
    public const int DefaultMaxTokens = 1024;

    /// <summary>The completion window of the OpenAI and Anthropic batch APIs, and the default of a file batch.</summary>
    public static readonly TimeSpan DefaultWindow = TimeSpan.FromHours(24);

    /// <summary>A completion window as the APIs write it: a whole number of days, hours, minutes or seconds (<c>24h</c>, <c>90m</c>); a part of a second counts as one.</summary>
    public static string WindowText(TimeSpan window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(window, TimeSpan.Zero, nameof(window));
        var seconds = (long)Math.Ceiling(window.TotalSeconds);
        return seconds % 86_400 == 0 ? $"{seconds / 86_400}d"
            : seconds % 3_600 == 0 ? $"{seconds / 3_600}h"
            : seconds % 60 == 0 ? $"{seconds / 60}m"
            : $"{seconds}s";
    }

    public static JsonObject BodyOf(BatchItem item, string endpoint, string? model) => WithModel(
        item.Body is { } given ? (JsonObject)given.DeepClone()
            : item.Chat is { } chat ? FromChat(chat, endpoint)
            : FromPrompt(item.Prompt!, endpoint),
        model);

    /// <summary>A typed chat request to <paramref name="model"/> as <paramref name="endpoint"/> takes it.</summary>
    public static JsonObject BodyOf(ChatRequest chat, string endpoint, string model) => WithModel(FromChat(chat, endpoint), model);

    private static JsonObject WithModel(JsonObject body, string? model)
    {
        if (model is not null && !body.ContainsKey("model"))
        {
            body["model"] = model;
        }

        return body;
    }

    private static JsonObject FromPrompt(string prompt, string endpoint) => endpoint switch
    {
        "/v1/embeddings" or "/v1/responses" => new JsonObject { ["input"] = prompt },
        "/v1/completions" => new JsonObject { ["prompt"] = prompt },
        "/v1/messages" => new JsonObject { ["max_tokens"] = DefaultMaxTokens, ["messages"] = UserMessage(prompt) },
        _ => new JsonObject { ["messages"] = UserMessage(prompt) },
    };

    /// <summary>A typed chat request as <paramref name="endpoint"/> takes it.</summary>
    private static JsonObject FromChat(ChatRequest chat, string endpoint)
    {
        var body = new JsonObject();
        switch (endpoint)
        {
            case "/v1/messages":
                if (chat.ResponseFormat is not null)
                {
                    throw new ArgumentException("Anthropic's Messages API takes no response_format: ask for a shape with a tool and its input_schema, in a body given with BatchItem.FromBody.", nameof(chat));
                }

                body["max_tokens"] = chat.MaxTokens ?? DefaultMaxTokens;
                body["system"] = chat.System;
                body["messages"] = UserMessage(chat.User);
                break;
            case "/v1/chat/completions":
                var messages = UserMessage(chat.User);
                if (chat.System is { } system)
                {
                    messages.Insert(0, new JsonObject { ["role"] = "system", ["content"] = system });
                }

                body["messages"] = messages;
                body["max_tokens"] = chat.MaxTokens;
                body["response_format"] = chat.ResponseFormat?.Wire.DeepClone();
                break;
            default:
                throw new ArgumentException($"A ChatRequest is written for /v1/chat/completions or /v1/messages, not {endpoint}: give other endpoints' bodies with BatchItem.FromBody.", nameof(chat));
        }

        body["temperature"] = chat.Temperature;
        // Fields left null are the provider's defaults: they are not sent at all.
        foreach (var unset in body.Where(p => p.Value is null).Select(p => p.Key).ToList())
        {
            body.Remove(unset);
        }

        return body;
    }

    private static JsonArray UserMessage(string prompt) => [new JsonObject { ["role"] = "user", ["content"] = prompt }];
}
