using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Shepherd.Client;

/// <summary>Registers a <see cref="ShepherdClient"/> with dependency injection.</summary>
public static class ShepherdClientServiceCollectionExtensions
{
    /// <summary>The name of the <see cref="HttpClient"/> the registered client sends through.</summary>
    public const string HttpClientName = "Shepherd.Client";

    /// <summary>
    /// Registers one <see cref="ShepherdClient"/> for the application, configured from
    /// <paramref name="configuration"/> (a section such as <c>Shepherd</c> with <c>BaseUrl</c>,
    /// <c>ApiKey</c>, <c>Api</c> and any other <see cref="ShepherdClientOptions"/> by name; a name
    /// it does not know is an error), sending through an <see cref="HttpClient"/> from
    /// <c>IHttpClientFactory</c>.
    /// </summary>
    /// <returns>The builder of that <see cref="HttpClient"/>, to add handlers to.</returns>
    /// <exception cref="InvalidOperationException">When the client is first resolved, if <c>BaseUrl</c> is missing or not an absolute url, or a setting is unknown.</exception>
    public static IHttpClientBuilder AddShepherdClient(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return services.AddShepherdClient(_ => FromConfiguration(configuration));
    }

    /// <summary>
    /// Registers one <see cref="ShepherdClient"/> for the application with the options
    /// <paramref name="options"/> makes, sending through an <see cref="HttpClient"/> from
    /// <c>IHttpClientFactory</c>.
    /// </summary>
    /// <returns>The builder of that <see cref="HttpClient"/>, to add handlers to.</returns>
    public static IHttpClientBuilder AddShepherdClient(this IServiceCollection services, Func<IServiceProvider, ShepherdClientOptions> options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        var http = services.AddHttpClient(HttpClientName)
            // The client keeps its own timeouts per call; a stream of results may run longer than 100 s.
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            // One client lives as long as the application: its connections are renewed instead of its handler.
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
            .SetHandlerLifetime(Timeout.InfiniteTimeSpan);
        services.TryAddSingleton(provider =>
        {
            var made = options(provider);
            made.LoggerFactory ??= provider.GetService<ILoggerFactory>();
            return new ShepherdClient(made, provider.GetRequiredService<IHttpClientFactory>().CreateClient(HttpClientName));
        });
        services.TryAddSingleton<IShepherdClient>(provider => provider.GetRequiredService<ShepherdClient>());
        return http;
    }

    private static ShepherdClientOptions FromConfiguration(IConfiguration configuration)
    {
        var where = configuration is IConfigurationSection section ? section.Path + ":" : "";
        var text = configuration[nameof(ShepherdClientOptions.BaseUrl)];
        if (!Uri.TryCreate(text, UriKind.Absolute, out var baseUrl))
        {
            throw new InvalidOperationException($"{where}BaseUrl must be the absolute url of a Shepherd server (or of the OpenAI or Anthropic API), such as http://127.0.0.1:8080; it is '{text}'.");
        }

        var options = new ShepherdClientOptions { BaseUrl = baseUrl };
        foreach (var setting in configuration.GetChildren())
        {
            if (setting.Value is not { } value)
            {
                throw new InvalidOperationException($"{where}{setting.Key} is a section; every setting of a Shepherd client is a single value.");
            }

            Set(options, setting.Key, value, where);
        }

        return options;
    }

    /// <summary>The settings that are durations, by name in any case.</summary>
    private static readonly Dictionary<string, Action<ShepherdClientOptions, TimeSpan>> Durations = new(StringComparer.OrdinalIgnoreCase)
    {
        [nameof(ShepherdClientOptions.RetryBaseDelay)] = (options, value) => options.RetryBaseDelay = value,
        [nameof(ShepherdClientOptions.RetryMaxDelay)] = (options, value) => options.RetryMaxDelay = value,
        [nameof(ShepherdClientOptions.BreakerDuration)] = (options, value) => options.BreakerDuration = value,
        [nameof(ShepherdClientOptions.RequestTimeout)] = (options, value) => options.RequestTimeout = value,
        [nameof(ShepherdClientOptions.PollInitialDelay)] = (options, value) => options.PollInitialDelay = value,
        [nameof(ShepherdClientOptions.PollMaxDelay)] = (options, value) => options.PollMaxDelay = value,
        [nameof(ShepherdClientOptions.WaitOutageTolerance)] = (options, value) => options.WaitOutageTolerance = value,
    };

    /// <summary>
    /// Sets one setting by its name, read as the configuration binder reads it (names in any case,
    /// durations as <c>hh:mm:ss</c>), without reflection, so the client stays fit for trimming and
    /// Native AOT. A name that is no setting is an error, not ignored.
    /// </summary>
    private static void Set(ShepherdClientOptions options, string key, string value, string where)
    {
        T Parsed<T>(bool valid, T parsed) => valid ? parsed : throw new InvalidOperationException($"{where}{key} cannot be '{value}'.");
        var culture = System.Globalization.CultureInfo.InvariantCulture;
        int Whole() => Parsed(int.TryParse(value, System.Globalization.NumberStyles.Integer, culture, out var number), number);
        switch (key.ToUpperInvariant())
        {
            case "BASEURL":
                break;
            case "APIKEY":
                options.ApiKey = value;
                break;
            case "API":
                options.Api = Parsed(Enum.TryParse<BatchApi>(value, ignoreCase: true, out var api) && Enum.IsDefined(api), api);
                break;
            case "MAXRETRIES":
                options.MaxRetries = Whole();
                break;
            case "BREAKERFAILURES":
                options.BreakerFailures = Whole();
                break;
            case "RESULTSPAGESIZE":
                options.ResultsPageSize = Whole();
                break;
            case "POLLGROWTH":
                options.PollGrowth = Parsed(double.TryParse(value, System.Globalization.NumberStyles.Float, culture, out var growth), growth);
                break;
            default:
                var set = Durations.GetValueOrDefault(key) ?? throw new InvalidOperationException($"{where}{key} is not a setting of a Shepherd client.");
                set(options, Parsed(TimeSpan.TryParse(value, culture, out var duration), duration));
                break;
        }
    }
}
